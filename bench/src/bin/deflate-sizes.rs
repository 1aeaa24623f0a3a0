//! deflate-sizes: compresses messages as rookery's permessage-deflate does
//! (flate2 on zlib-rs, raw DEFLATE, level 6, window 15, reset before every
//! message, sync flush, the `00 00 ff ff` tail stripped) and prints their
//! compressed sizes. Driven by `bench/deflate_sizes.py --zlib-rs`: reads
//! lines `TAG<TAB>HEX-OF-MESSAGE`, writes `TAG<TAB>COMPRESSED-BYTES`.

use std::io::{BufRead, Write};

fn main() {
    let mut z = flate2::Compress::new_with_window_bits(flate2::Compression::new(6), false, 15);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut buf = Vec::new();
    for line in std::io::stdin().lock().lines() {
        let line = line.expect("stdin");
        let (tag, hex) = line.split_once('\t').expect("TAG<TAB>HEX");
        let msg: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
            .collect();
        z.reset();
        buf.clear();
        buf.reserve(msg.len() + 64);
        z.compress_vec(&msg, &mut buf, flate2::FlushCompress::Sync)
            .expect("deflate");
        assert!(buf.ends_with(&[0, 0, 0xff, 0xff]), "no sync tail");
        writeln!(out, "{tag}\t{}", buf.len() - 4).expect("stdout");
    }
}
