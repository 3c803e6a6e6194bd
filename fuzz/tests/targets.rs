//! The fuzz targets on stable: each over its seeds and every regression fuzzing found, then over
//! proptest's mutations of the seeds (byte flips, inserts, deletions, splices, truncations).
//! `PROPTEST_CASES` sets how many mutations per target (default 256 here; `scripts/fuzz` runs
//! the coverage-guided fuzzer instead).

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use spindle_fuzz::{TARGETS, Target};
use std::path::{Path, PathBuf};

fn inputs(dir: &str, target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir).join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
    let mut files: Vec<_> = entries.map(|e| e.expect("dir entry").path()).collect();
    files.sort();
    files.into_iter().map(|p| (p.clone(), std::fs::read(&p).expect("readable input"))).collect()
}

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let seeds: Vec<_> = inputs("seeds", target).into_iter().map(|(_, bytes)| bytes).collect();
    assert!(!seeds.is_empty(), "target {target} has no seeds in fuzz/seeds/{target}");
    seeds
}

#[derive(Clone, Debug)]
enum Edit {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Splice(usize, usize, usize),
    Truncate(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let interesting = prop::sample::select(vec![
        b"0".to_vec(),
        b"-1".to_vec(),
        b"4294967296".to_vec(),
        b"18446744073709551616".to_vec(),
        b"[".to_vec(),
        b"]".to_vec(),
        b"\"".to_vec(),
        b"\r\n".to_vec(),
        b"/...".to_vec(),
        b"/..".to_vec(),
        vec![0xff, 0xfe],
        vec![0],
    ]);
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Flip(i, b)),
        (any::<usize>(), prop_oneof![prop::collection::vec(any::<u8>(), 1..8), interesting]).prop_map(|(i, bytes)| Edit::Insert(i, bytes)),
        (any::<usize>(), 1..16usize).prop_map(|(i, n)| Edit::Delete(i, n)),
        (any::<usize>(), any::<usize>(), 1..64usize).prop_map(|(s, d, n)| Edit::Splice(s, d, n)),
        any::<usize>().prop_map(Edit::Truncate),
    ]
}

fn apply(mut input: Vec<u8>, edits: &[Edit], other: &[u8]) -> Vec<u8> {
    for edit in edits {
        let at = |i: usize, len: usize| if len == 0 { 0 } else { i % (len + 1) };
        match edit {
            Edit::Flip(i, b) if !input.is_empty() => {
                let i = i % input.len();
                input[i] ^= b;
            }
            Edit::Flip(..) => {}
            Edit::Insert(i, bytes) => {
                let i = at(*i, input.len());
                input.splice(i..i, bytes.iter().copied());
            }
            Edit::Delete(i, n) => {
                let i = at(*i, input.len());
                input.drain(i..(i + n).min(input.len()));
            }
            Edit::Splice(s, d, n) if !other.is_empty() => {
                let s = s % other.len();
                let d = at(*d, input.len());
                input.splice(d..d, other[s..(s + n).min(other.len())].iter().copied());
            }
            Edit::Splice(..) => {}
            Edit::Truncate(i) => input.truncate(at(*i, input.len())),
        }
    }
    input
}

fn mutate(&(name, target): &Target) {
    let seeds = seeds(name);
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(256);
    let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
    let strategy = (0..seeds.len(), 0..seeds.len(), prop::collection::vec(edit(), 1..6));
    let result = runner.run(&strategy, |(seed, other, edits)| {
        let input = apply(seeds[seed].clone(), &edits, &seeds[other]);
        target(&input);
        Ok(())
    });
    if let Err(e) = result {
        panic!("target {name}: {e}\n(copy the failing input into fuzz/regressions/{name}/ once fixed)");
    }
}

#[test]
fn seeds_and_regressions_pass() {
    for &(name, target) in TARGETS {
        for (path, input) in inputs("seeds", name).into_iter().chain(inputs("regressions", name)) {
            if std::panic::catch_unwind(|| target(&input)).is_err() {
                panic!("target {name} fails on {}", path.display());
            }
        }
    }
}

#[test]
fn mutated_oip_requests_hold() {
    mutate(&TARGETS[0]);
}

#[test]
fn mutated_json_tensors_hold() {
    mutate(&TARGETS[1]);
}

#[test]
fn mutated_multipart_forms_hold() {
    mutate(&TARGETS[2]);
}

#[test]
fn mutated_images_hold() {
    mutate(&TARGETS[3]);
}

#[test]
fn mutated_manifests_hold() {
    mutate(&TARGETS[4]);
}

#[test]
fn mutated_routes_hold() {
    mutate(&TARGETS[5]);
}

#[test]
fn mutated_tensors_hold() {
    mutate(&TARGETS[6]);
}

proptest! {
    /// Tensors straight from proptest's integers rather than mutated seeds: ranks 0–10, dimensions
    /// near the edges, every element type.
    #[test]
    fn tensor_rules_hold(ty in 0u8..7, len in prop_oneof![0u64..4096, any::<u64>()],
                         dims in prop::collection::vec(prop_oneof![0u32..4, 1u32..70_000, any::<u32>()], 0..11)) {
        let mut input = vec![ty];
        input.extend_from_slice(&len.to_le_bytes());
        for d in dims {
            input.extend_from_slice(&d.to_le_bytes());
        }
        spindle_fuzz::tensor(&input);
    }

    /// Routes and paths from a small alphabet, so that prefixes, slashes and wildcards collide.
    #[test]
    fn routing_matches_the_reference(routes in prop::collection::vec("/[ab/]{0,6}(/\\.\\.\\.)?", 0..6),
                                     paths in prop::collection::vec("/[ab/.]{0,8}", 1..6)) {
        let input = format!("{}\n\n{}", routes.join("\n"), paths.join("\n"));
        spindle_fuzz::routes(input.as_bytes());
    }
}
