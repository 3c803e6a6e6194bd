//! A WAV body as the model hears it: mono float samples at 16 kHz. Integer PCM (8 to 32 bits)
//! and 32-bit float are read (`hound`); channels are averaged; 8 kHz and every other rate from
//! 8 to 48 kHz are resampled to 16 kHz (each output sample the mean of the input samples it
//! spans, interpolated linearly when upsampling); anything else is refused, saying why.

use std::io::Cursor;

/// The model's sample rate.
pub const RATE: u32 = 16_000;
/// Rates accepted, to be resampled when not [`RATE`].
pub const RATES: std::ops::RangeInclusive<u32> = 8_000..=48_000;
/// The longest audio one request may carry.
pub const MAX_SECONDS: u32 = 600;
/// The most channels a file may have.
pub const MAX_CHANNELS: u16 = 16;

/// Decoded audio.
#[derive(Debug)]
pub struct Audio {
    /// Mono samples in [-1, 1] at [`RATE`].
    pub samples: Vec<f32>,
    /// The rate the file had.
    pub source_rate: u32,
    /// The channels the file had.
    pub source_channels: u16,
}

/// Reads a WAV body; the error says what is wrong with it.
pub fn decode(body: &[u8]) -> Result<Audio, String> {
    if body.is_empty() {
        return Err("the body is empty: send a WAV file (16 kHz mono PCM is what the model hears)".into());
    }
    let mut reader = hound::WavReader::new(Cursor::new(body)).map_err(|e| format!("not a readable WAV file: {e}"))?;
    let spec = reader.spec();
    if !RATES.contains(&spec.sample_rate) {
        return Err(format!(
            "sample rate {} Hz is not supported: send {}–{} Hz (16 kHz is the model's own; other rates are resampled)",
            spec.sample_rate,
            RATES.start(),
            RATES.end()
        ));
    }
    if spec.channels == 0 || spec.channels > MAX_CHANNELS {
        return Err(format!("the WAV file has {} channels; 1 to {MAX_CHANNELS} are accepted", spec.channels));
    }
    let frames = reader.duration();
    if frames == 0 {
        return Err("the WAV file holds no audio".into());
    }
    if frames / spec.sample_rate > MAX_SECONDS {
        return Err(format!("the audio is {} s long; at most {MAX_SECONDS} s per request", frames / spec.sample_rate));
    }
    let channels = usize::from(spec.channels);
    let corrupt = |e: hound::Error| format!("the WAV file's samples are cut short or corrupt: {e}");
    // Mixed down as they are read: the interleaved samples are never held.
    let mut mono = Vec::with_capacity((frames as usize).min(MAX_SECONDS as usize * 48_000));
    let mut mix = |samples: &mut dyn Iterator<Item = Result<f32, String>>| -> Result<(), String> {
        let mut frame = (0.0f32, 0usize);
        for sample in samples {
            frame.0 += sample?;
            frame.1 += 1;
            if frame.1 == channels {
                mono.push(frame.0 / channels as f32);
                frame = (0.0, 0);
            }
        }
        Ok(())
    };
    match spec.sample_format {
        hound::SampleFormat::Float if spec.bits_per_sample == 32 => mix(&mut reader.samples::<f32>().map(|s| {
            s.map_err(corrupt)
                .and_then(|s| if s.is_finite() { Ok(s) } else { Err("the WAV file holds a sample that is not a finite number".to_owned()) })
        }))?,
        hound::SampleFormat::Int if (8..=32).contains(&spec.bits_per_sample) => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32;
            mix(&mut reader.samples::<i32>().map(|s| s.map(|s| s as f32 * scale).map_err(corrupt)))?
        }
        _ => {
            return Err(format!(
                "{}-bit {:?} samples are not supported (PCM 8–32 bit, or 32-bit float)",
                spec.bits_per_sample, spec.sample_format
            ));
        }
    }
    Ok(Audio { samples: resample(&mono, spec.sample_rate, RATE), source_rate: spec.sample_rate, source_channels: spec.channels })
}

/// `samples` at `from` Hz as samples at `to` Hz.
pub fn resample(samples: &[f32], from: u32, to: u32) -> Vec<f32> {
    if from == to || samples.is_empty() {
        return samples.to_vec();
    }
    let step = f64::from(from) / f64::from(to);
    let count = ((samples.len() as f64) / step).floor() as usize;
    (0..count)
        .map(|i| {
            let position = i as f64 * step;
            if step > 1.0 {
                // Downsampling: the mean of the input samples this output sample spans.
                let first = position as usize;
                let last = (((i + 1) as f64 * step) as usize).clamp(first + 1, samples.len());
                samples[first..last].iter().sum::<f32>() / (last - first) as f32
            } else {
                let left = position as usize;
                let right = (left + 1).min(samples.len() - 1);
                let t = (position - left as f64) as f32;
                samples[left] * (1.0 - t) + samples[right] * t
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(rate: u32, channels: u16, samples: &[i16]) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        let spec = hound::WavSpec { channels, sample_rate: rate, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
        let mut writer = hound::WavWriter::new(&mut out, spec).unwrap();
        samples.iter().for_each(|&s| writer.write_sample(s).unwrap());
        writer.finalize().unwrap();
        out.into_inner()
    }

    #[test]
    fn stereo_is_mixed_down_and_8k_doubled() {
        let audio = decode(&wav(8_000, 2, &[16384, 0, 16384, 0, -16384, 0])).unwrap();
        assert_eq!((audio.source_rate, audio.source_channels), (8_000, 2));
        assert_eq!(audio.samples.len(), 6);
        assert!((audio.samples[0] - 0.25).abs() < 1e-6);
    }

    #[test]
    fn downsampling_keeps_the_duration() {
        let one_second = vec![0.5f32; 44_100];
        let out = resample(&one_second, 44_100, RATE);
        assert_eq!(out.len(), 16_000);
        assert!(out.iter().all(|s| (s - 0.5).abs() < 1e-6));
    }

    #[test]
    fn non_finite_float_samples_are_refused() {
        let mut out = Cursor::new(Vec::new());
        let spec = hound::WavSpec { channels: 1, sample_rate: RATE, bits_per_sample: 32, sample_format: hound::SampleFormat::Float };
        let mut writer = hound::WavWriter::new(&mut out, spec).unwrap();
        [0.0f32, f32::NAN, 0.5].iter().for_each(|&s| writer.write_sample(s).unwrap());
        writer.finalize().unwrap();
        assert!(decode(&out.into_inner()).unwrap_err().contains("not a finite number"));
    }

    #[test]
    fn bad_bodies_say_what_is_wrong() {
        assert!(decode(b"").unwrap_err().contains("empty"));
        assert!(decode(b"RIFF1234WAVEjunk").unwrap_err().contains("not a readable WAV"));
        assert!(decode(&wav(4_000, 1, &[0; 100])).unwrap_err().contains("4000 Hz is not supported"));
        let mut cut = wav(RATE, 1, &[1000; 100]);
        cut.truncate(cut.len() - 51);
        assert!(decode(&cut).unwrap_err().contains("cut short"));
        assert!(decode(&wav(RATE, 1, &[])).unwrap_err().contains("no audio"));
    }
}
