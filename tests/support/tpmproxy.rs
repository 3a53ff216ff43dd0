//! A TCP proxy in front of a swtpm that "dies" at a chosen point: it forwards the TPM command
//! channel frame by frame (header: tag u16, size u32, command code u32) and, once it has forwarded
//! the response to the N-th `TPM2_PCR_Extend`, closes every connection and refuses new ones, as if
//! swtpm had been killed between two measurements. The control port (P+1) is forwarded as bytes.
//! Deterministic, unlike killing the process at a guessed moment.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

const TPM_CC_PCR_EXTEND: u32 = 0x0000_0182;

/// The running proxy; `spec()` is what `--tpm` takes.
pub struct TpmProxy {
    pub port: u16,
    dead: Arc<AtomicBool>,
    extends: Arc<AtomicU32>,
}

fn listen_pair() -> (TcpListener, TcpListener, u16) {
    for p in (31000..39000u16)
        .step_by(2)
        .skip((std::process::id() % 997) as usize * 2)
    {
        if let (Ok(a), Ok(b)) = (
            TcpListener::bind(("127.0.0.1", p)),
            TcpListener::bind(("127.0.0.1", p + 1)),
        ) {
            return (a, b, p);
        }
    }
    panic!("no free port pair for the TPM proxy");
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Both);
    });
}

/// Reads one TPM frame (header + body) from `s`.
fn frame(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut h = [0u8; 6];
    s.read_exact(&mut h).ok()?;
    let size = u32::from_be_bytes([h[2], h[3], h[4], h[5]]) as usize;
    if !(6..=1 << 20).contains(&size) {
        return None;
    }
    let mut f = h.to_vec();
    f.resize(size, 0);
    s.read_exact(&mut f[6..]).ok()?;
    Some(f)
}

impl TpmProxy {
    /// Proxies the swtpm at `upstream` (its server port); dies after the `after`-th PCR_Extend.
    pub fn start(upstream: u16, after: u32) -> Self {
        let (cmd, ctrl, port) = listen_pair();
        let dead = Arc::new(AtomicBool::new(false));
        let extends = Arc::new(AtomicU32::new(0));
        {
            let dead = dead.clone();
            std::thread::spawn(move || {
                for c in ctrl.incoming() {
                    if dead.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(c) = c else { continue };
                    let Ok(u) = TcpStream::connect(("127.0.0.1", upstream + 1)) else {
                        continue;
                    };
                    pipe(c.try_clone().unwrap(), u.try_clone().unwrap());
                    pipe(u, c);
                }
            });
        }
        {
            let (dead, extends) = (dead.clone(), extends.clone());
            std::thread::spawn(move || {
                for c in cmd.incoming() {
                    if dead.load(Ordering::SeqCst) {
                        return; // the listener is dropped: connections are refused
                    }
                    let Ok(mut c) = c else { continue };
                    let Ok(mut u) = TcpStream::connect(("127.0.0.1", upstream)) else {
                        continue;
                    };
                    let (dead, extends) = (dead.clone(), extends.clone());
                    std::thread::spawn(move || {
                        while let Some(req) = frame(&mut c) {
                            if dead.load(Ordering::SeqCst) {
                                break;
                            }
                            let cc = u32::from_be_bytes([req[6], req[7], req[8], req[9]]);
                            let Some(resp) = u.write_all(&req).ok().and_then(|_| frame(&mut u))
                            else {
                                break;
                            };
                            if c.write_all(&resp).is_err() {
                                break;
                            }
                            if cc == TPM_CC_PCR_EXTEND
                                && extends.fetch_add(1, Ordering::SeqCst) + 1 == after
                            {
                                dead.store(true, Ordering::SeqCst);
                                break;
                            }
                        }
                        let _ = c.shutdown(Shutdown::Both);
                        let _ = u.shutdown(Shutdown::Both);
                    });
                }
            });
        }
        Self {
            port,
            dead,
            extends,
        }
    }

    /// `--tpm` for verity.
    pub fn spec(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// How many PCR_Extend commands went through.
    pub fn extends(&self) -> u32 {
        self.extends.load(Ordering::SeqCst)
    }

    /// Whether the proxy has "died".
    pub fn is_dead(&self) -> bool {
        self.dead.load(Ordering::SeqCst)
    }
}
