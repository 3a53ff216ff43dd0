//! Fuzz target: the Reed-Solomon decoder must never panic on any codeword and erasure list, and
//! whatever it accepts must be a real codeword (re-encoding its message gives its parity) no
//! further than `roots` symbols from the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use verity::verity::fec::Code;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 + 255 {
        return;
    }
    let roots = 2 + (data[0] as u32 % 23);
    let code = Code::new(roots).expect("roots in range");
    let n_eras = data[1] as usize % 32;
    let rest = &data[2..];
    if rest.len() < n_eras + 255 {
        return;
    }
    let eras: Vec<usize> = rest[..n_eras].iter().map(|&b| b as usize).collect();
    let input = &rest[n_eras..n_eras + 255];
    let mut cw = input.to_vec();
    match code.decode(&mut cw, &eras) {
        Ok(changed) => {
            let k = code.k();
            let mut parity = vec![0u8; roots as usize];
            code.encode(&cw[..k], &mut parity);
            assert_eq!(&cw[k..], &parity[..], "decoder returned a non-codeword");
            let diff = cw.iter().zip(input).filter(|(a, b)| a != b).count();
            assert_eq!(diff, changed);
            assert!(diff <= roots as usize);
        }
        Err(_) => assert_eq!(&cw[..], input, "a failed decode must leave the word alone"),
    }
});
