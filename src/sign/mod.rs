//! Root-hash signatures: detached PKCS#7 signing and verification, trust stores.
