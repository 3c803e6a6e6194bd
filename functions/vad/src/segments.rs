//! Speech segments from per-window speech probabilities, as Silero's own timestamps are made:
//! speech starts at a window whose probability reaches `threshold`, and ends at the first of a
//! run of windows below `threshold − 0.15` that lasts `min_silence`; segments shorter than
//! `min_speech` are dropped; each is then widened by `pad` on both sides, sharing a gap shorter
//! than two pads half and half.

/// Samples per window at 16 kHz.
pub const WINDOW: usize = 512;

/// How segments are found.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Probability at which speech starts.
    pub threshold: f32,
    /// Shortest speech kept, in samples.
    pub min_speech: usize,
    /// Shortest silence that ends speech, in samples.
    pub min_silence: usize,
    /// Padding added around each segment, in samples.
    pub pad: usize,
}

/// Segments as `(start, end)` sample offsets, for audio of `length` samples.
pub fn segments(probabilities: &[f32], length: usize, settings: Settings) -> Vec<(usize, usize)> {
    let release = (settings.threshold - 0.15).max(0.01);
    let mut found: Vec<(usize, usize)> = Vec::new();
    let mut start: Option<usize> = None;
    let mut silent_since: Option<usize> = None;
    for (i, &p) in probabilities.iter().enumerate() {
        let at = i * WINDOW;
        if p >= settings.threshold {
            silent_since = None;
            start.get_or_insert(at);
            continue;
        }
        let Some(began) = start else { continue };
        if p < release {
            let quiet = *silent_since.get_or_insert(at);
            if at - quiet >= settings.min_silence {
                if quiet - began > settings.min_speech {
                    found.push((began, quiet));
                }
                start = None;
                silent_since = None;
            }
        }
    }
    if let Some(began) = start
        && length.saturating_sub(began) > settings.min_speech
    {
        found.push((began, length));
    }
    let mut padded = found.clone();
    for i in 0..padded.len() {
        if i == 0 {
            padded[i].0 = found[i].0.saturating_sub(settings.pad);
        }
        match found.get(i + 1) {
            Some(next) => {
                let gap = next.0 - found[i].1;
                if gap < 2 * settings.pad {
                    padded[i].1 = found[i].1 + gap / 2;
                    padded[i + 1].0 = next.0 - gap / 2;
                } else {
                    padded[i].1 = (found[i].1 + settings.pad).min(length);
                    padded[i + 1].0 = next.0.saturating_sub(settings.pad);
                }
            }
            None => padded[i].1 = (found[i].1 + settings.pad).min(length),
        }
    }
    padded
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTINGS: Settings = Settings { threshold: 0.5, min_speech: 4000, min_silence: 1600, pad: 480 };

    fn windows(pattern: &[(f32, usize)]) -> Vec<f32> {
        pattern.iter().flat_map(|&(p, n)| std::iter::repeat_n(p, n)).collect()
    }

    #[test]
    fn speech_between_silences_is_one_padded_segment() {
        let probabilities = windows(&[(0.0, 10), (0.9, 20), (0.0, 10)]);
        assert_eq!(segments(&probabilities, 40 * WINDOW, SETTINGS), vec![(10 * WINDOW - 480, 30 * WINDOW + 480)]);
    }

    #[test]
    fn a_short_dip_does_not_split_and_a_short_blip_is_dropped() {
        let dip = windows(&[(0.9, 20), (0.1, 2), (0.9, 20), (0.0, 10)]);
        assert_eq!(segments(&dip, 52 * WINDOW, SETTINGS).len(), 1);
        let blip = windows(&[(0.0, 10), (0.9, 3), (0.0, 10)]);
        assert!(segments(&blip, 23 * WINDOW, SETTINGS).is_empty());
        let between = windows(&[(0.9, 20), (0.4, 10), (0.9, 20)]);
        assert_eq!(segments(&between, 50 * WINDOW, SETTINGS).len(), 1, "above the release threshold is not silence");
    }

    #[test]
    fn speech_to_the_end_and_close_segments_share_their_gap() {
        let probabilities = windows(&[(0.0, 5), (0.9, 20), (0.0, 5), (0.9, 20)]);
        let found = segments(&probabilities, 50 * WINDOW, SETTINGS);
        assert_eq!(found.len(), 2);
        assert_eq!(found[1].1, 50 * WINDOW);
        assert!(found[0].1 <= found[1].0);
    }
}
