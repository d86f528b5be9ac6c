//! Writes the seed corpus of the fuzz targets (fuzz/seeds/) from the synthetic recording
//! generator: small whole recordings (stored and LZ4) for `recording`, and single ring-buffer
//! records of each kind the generator makes for `ring_record`. The seeds are committed; run
//! this again after a change of the recording format or the event layout:
//!
//! ```text
//! cargo +1.99.1 run -p gup-trace --example fuzz_seeds -- fuzz/seeds
//! ```

use std::{collections::BTreeMap, mem::offset_of, path::PathBuf};

use anyhow::{Context as _, Result};
use gup_trace::recording::{Compression, synthetic};
use gup_trace_common::Event;

fn main() -> Result<()> {
    let dir = PathBuf::from(std::env::args().nth(1).context("usage: fuzz_seeds DIR")?);
    let write = |target: &str, name: &str, bytes: &[u8]| -> Result<()> {
        let d = dir.join(target);
        std::fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
        let path = d.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))
    };
    for (name, seed, events, compression) in [
        ("synthetic-lz4", 1, 150, Compression::Lz4),
        ("synthetic-stored", 2, 40, Compression::None),
    ] {
        let (bytes, _) = synthetic::write_recording(Vec::new(), seed, events, compression)?;
        write("recording", name, &bytes)?;
    }
    // One record of each kind and hook the generator makes, with folios behind it or not.
    let mut synth = synthetic::Synthetic::new(3, 8);
    let mut kinds = BTreeMap::new();
    let mut record = Vec::new();
    let field = |r: &[u8], at: usize| u32::from_le_bytes(r[at..at + 4].try_into().unwrap());
    for _ in 0..5_000 {
        synth.next_record(&mut record);
        let key = (
            field(&record, offset_of!(Event, kind)),
            field(&record, offset_of!(Event, hook)),
            record.len() > size_of::<Event>(),
        );
        kinds.entry(key).or_insert_with(|| record.clone());
    }
    for ((kind, hook, folios), bytes) in &kinds {
        let name = format!(
            "kind{kind}-hook{hook}{}",
            if *folios { "-folios" } else { "" }
        );
        write("ring_record", &name, bytes)?;
    }
    Ok(())
}
