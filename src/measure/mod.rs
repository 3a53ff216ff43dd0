//! Measurement: PCR bank math, the systemd-compatible event log, and the `Tpm` trait with its
//! tss-esapi and software implementations.
