//! Fuzz target: the tpm2-measure.log reader must never panic on any bytes, and what it accepts
//! must survive a write and a re-read with the same PCRs, digests and content.
#![no_main]

use libfuzzer_sys::fuzz_target;
use verity::measure::eventlog::{parse_log, LogRecord};

fuzz_target!(|data: &[u8]| {
    if let Ok(records) = parse_log(data) {
        let written: Vec<u8> = records.iter().flat_map(LogRecord::to_bytes).collect();
        let again = parse_log(&written).expect("a written log parses");
        assert_eq!(again.len(), records.len());
        for (a, b) in again.iter().zip(&records) {
            assert_eq!(a.pcr, b.pcr);
            assert_eq!(a.digests, b.digests);
            assert_eq!(a.content_type, b.content_type);
            assert_eq!(a.string(), b.string());
            assert_eq!(a.event_type(), b.event_type());
        }
    }
});
