//! The Reed-Solomon parity kernels against each other and against the per-codeword encoder:
//! the AVX2 kernel (where the CPU has it), the portable tiled encoder and `Code::encode`, for every
//! root count the kernel accepts and row widths around the vector and tile sizes; plus a
//! throughput probe (ignored by default:
//! `cargo test --release --test fec_kernels -- --ignored --nocapture`).

use verity::sys::simd::rs_avx2;
use verity::verity::fec::Code;

/// A small xorshift generator so failures reproduce without a seed file.
fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// One codeword at a time with the plain LFSR: the definition the fast paths must equal.
fn reference(code: &Code, rows: &[u8], row_len: usize) -> Vec<u8> {
    let r = code.roots();
    let mut out = vec![0u8; row_len * r];
    for c in 0..row_len {
        let msg: Vec<u8> = (0..code.k()).map(|j| rows[j * row_len + c]).collect();
        code.encode(&msg, &mut out[c * r..(c + 1) * r]);
    }
    out
}

fn cpu_has(flag: &str) -> bool {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").expect("/proc/cpuinfo");
    cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .is_some_and(|l| l.split_whitespace().any(|f| f == flag))
}

fn simd_forced_off() -> bool {
    std::env::var("VERITY_SIMD").is_ok_and(|v| v.trim().eq_ignore_ascii_case("portable"))
}

#[test]
fn a_cpu_with_avx2_runs_the_simd_kernel() {
    // Read independently of the crate's detection: if the CPU has AVX2 (and the portable paths
    // are not forced), the kernel must run, or the fast path has been lost.
    let expect = cfg!(target_arch = "x86_64") && cpu_has("avx2") && !simd_forced_off();
    assert_eq!(rs_avx2::available(), expect);
}

#[test]
fn every_kernel_equals_the_per_codeword_encoder() {
    for roots in 2..=24u32 {
        let code = Code::new(roots).unwrap();
        let r = roots as usize;
        for (i, row_len) in [32usize, 64, 96, 128, 480, 512, 544, 4096, 8192 + 32, 40, 8]
            .into_iter()
            .enumerate()
        {
            let rows = random_bytes(row_len * code.k(), (roots as u64) << 8 | i as u64);
            let want = reference(&code, &rows, row_len);
            let mut portable = vec![0xAAu8; row_len * r];
            code.encode_rows_portable(&rows, row_len, &mut portable);
            assert!(
                portable == want,
                "portable, roots {roots}, row_len {row_len}"
            );
            let mut auto = vec![0x55u8; row_len * r];
            code.encode_rows(&rows, row_len, &mut auto);
            assert!(
                auto == want,
                "encode_rows, roots {roots}, row_len {row_len}"
            );
            if rs_avx2::available() {
                // The kernel itself, with the generator's nibble tables built here from the
                // generator independently of Code's own.
                let tables = nibble_tables(&code);
                let mut simd = vec![0x11u8; row_len * r];
                let ran = rs_avx2::encode_rows(&tables, &rows, row_len, &mut simd);
                assert_eq!(ran, row_len % 32 == 0, "roots {roots}, row_len {row_len}");
                if ran {
                    assert!(simd == want, "avx2, roots {roots}, row_len {row_len}");
                }
            }
        }
    }
}

/// GF(2^8)/0x11d product by shift and add.
fn gf_mul(mut a: u8, mut b: u8) -> u8 {
    let mut r = 0u8;
    while b != 0 {
        if b & 1 != 0 {
            r ^= a;
        }
        let hi = a & 0x80 != 0;
        a <<= 1;
        if hi {
            a ^= 0x1d;
        }
        b >>= 1;
    }
    r
}

fn nibble_tables(code: &Code) -> Vec<[u8; 32]> {
    let g = code.generator();
    let r = code.roots();
    let mut t = Vec::new();
    for i in 0..r {
        let c = g[r - 1 - i];
        t.push(std::array::from_fn(|x| gf_mul(c, (x % 16) as u8)));
        t.push(std::array::from_fn(|x| gf_mul(c, ((x % 16) << 4) as u8)));
    }
    t
}

#[test]
fn the_kernel_refuses_shapes_it_does_not_handle() {
    let code = Code::new(4).unwrap();
    let tables = nibble_tables(&code);
    let rows = vec![0u8; 64 * code.k()];
    let mut out = vec![0u8; 64 * 4];
    // Wrong output size, odd table count, a row length that is not whole vectors.
    assert!(!rs_avx2::encode_rows(&tables, &rows, 64, &mut out[..10]));
    assert!(!rs_avx2::encode_rows(&tables[..7], &rows, 64, &mut out));
    assert!(!rs_avx2::encode_rows(
        &tables,
        &rows[..48 * code.k()],
        48,
        &mut out[..48 * 4]
    ));
}

/// CPU time of this thread in nanoseconds, so the figures hold on a loaded machine.
fn thread_cpu_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

#[test]
#[ignore = "throughput probe; run with --release --ignored --nocapture"]
fn throughput_per_kernel() {
    for roots in [2u32, 8, 24] {
        let code = Code::new(roots).unwrap();
        for row_len in [32usize, 256, 4096, 16384] {
            // Small rows are repeated so every size encodes about 16 MiB.
            let reps = (16 << 20) / (row_len * code.k()) + 1;
            let rows = random_bytes(row_len * code.k(), 3);
            let mut out = vec![0u8; row_len * roots as usize];
            let mut line = format!("roots {roots:2} row {row_len:5}:");
            for (name, simd) in [("portable", false), ("auto", true)] {
                let mut best = f64::MAX;
                for _ in 0..7 {
                    let t = thread_cpu_ns();
                    for _ in 0..reps {
                        if simd {
                            code.encode_rows(&rows, row_len, &mut out);
                        } else {
                            code.encode_rows_portable(&rows, row_len, &mut out);
                        }
                    }
                    best = best.min((thread_cpu_ns() - t) as f64);
                }
                line += &format!("  {name} {:.2} GB/s", (reps * rows.len()) as f64 / best);
            }
            println!("{line}");
        }
    }
}

#[test]
fn a_cpu_with_gfni_streams_parity_with_gfni() {
    // Read independently of the crate's detection, as above: the fastest multiply-accumulate
    // kernel the CPU has must be the one chosen.
    use verity::sys::simd::gf_mac::{best, Kernel};
    let x86 = cfg!(target_arch = "x86_64") && !simd_forced_off();
    let expect = if x86 && cpu_has("gfni") && cpu_has("avx512f") && cpu_has("avx512bw") {
        Some(Kernel::Gfni512)
    } else if x86 && cpu_has("avx2") {
        Some(Kernel::Avx2)
    } else {
        None
    };
    assert_eq!(best(), expect);
}

/// `format --fec-device` through the binary, once with the parity streamed during the tree pass
/// (the default where a SIMD kernel runs) and once with `VERITY_SIMD=portable` (the round
/// encoder reading the image again): the files must be identical, for parity on its own file and
/// on the hash file, with a hole in the data and more than one round.
#[test]
fn streamed_and_round_encoded_parity_files_are_identical() {
    use verity::sys::simd::gf_mac::Kernel;
    let dir = std::env::temp_dir().join(format!("verity-fec-stream-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let data = dir.join("data");
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::File::create(&data).unwrap();
        f.write_all(&random_bytes(1500 * 4096, 1)).unwrap();
        // 1000 blocks of hole, then data again: 3000 blocks, 12 rounds at 2 roots.
        f.seek(SeekFrom::Start(2500 * 4096)).unwrap();
        f.write_all(&random_bytes(500 * 4096 + 100, 2)).unwrap();
    }
    let run = |tag: &str, portable: bool, roots: &str, on_hash: bool| {
        let hash = dir.join(format!("hash-{tag}"));
        let fec = if on_hash {
            hash.clone()
        } else {
            dir.join(format!("fec-{tag}"))
        };
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_verity"));
        cmd.args(["format", "--debug", "--salt", "0badc0de", "--uuid"])
            .arg("5b3c4a6e-1d2f-4e5a-8b7c-9d0e1f2a3b4c")
            .arg(&data)
            .arg(&hash)
            .arg("--fec-device")
            .arg(&fec)
            .args(["--fec-roots", roots]);
        if on_hash {
            cmd.args(["--fec-offset", "1048576"]);
        }
        if portable {
            cmd.env("VERITY_SIMD", "portable");
        } else {
            cmd.env_remove("VERITY_SIMD");
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // `--debug` names the pass that computed the parity: the tree pass itself when streamed,
        // a separate FEC pass otherwise.
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let streamed = stderr.contains("# tree hashing + FEC:");
        assert_eq!(streamed, !stderr.contains("# fec encoding:"), "{stderr}");
        let files = (std::fs::read(hash).unwrap(), std::fs::read(fec).unwrap());
        (files, streamed)
    };
    // The stream runs wherever a multiply-accumulate kernel does (checked independently of the
    // crate's detection above), never with the portable paths forced.
    let simd = [Kernel::Gfni512, Kernel::Avx2]
        .into_iter()
        .any(verity::sys::simd::gf_mac::can_run);
    for (roots, on_hash) in [("2", false), ("5", false), ("2", true)] {
        let (streamed, used_stream) = run("s", false, roots, on_hash);
        let (rounds, used_stream_portable) = run("r", true, roots, on_hash);
        assert_eq!(used_stream, simd, "roots {roots}: streamed parity used");
        assert!(
            !used_stream_portable,
            "the stream ran with VERITY_SIMD=portable"
        );
        assert!(streamed.1.iter().any(|&b| b != 0), "no parity written");
        assert!(
            streamed == rounds,
            "roots {roots} on hash {on_hash}: parity differs"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
