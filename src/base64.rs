//! base64 in the two spellings the API uses: standard with `=` padding (a kubeconfig's
//! `*-data` fields, `certificate-authority-data` for an exec plugin, and the testkit's own
//! kubeconfig), and base64url without padding (the testkit's continue tokens, as Go's
//! `base64.RawURLEncoding` writes them). Small enough not to be a dependency.

/// Which base64 an encoding or a decoding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Alphabet {
    /// `+` and `/`, padded with `=`; a decoding skips whitespace (a kubeconfig may wrap a
    /// long value).
    Standard,
    /// `-` and `_`, no padding; a decoding refuses anything else, stray bits included.
    // Only the testkit's continue tokens use it.
    #[cfg_attr(not(feature = "testkit"), allow(dead_code))]
    Url,
}

impl Alphabet {
    fn table(self) -> &'static [u8; 64] {
        match self {
            Alphabet::Standard => {
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
            }
            Alphabet::Url => b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
        }
    }
}

/// `bytes` in base64 of `alphabet` (padded for [`Alphabet::Standard`]).
pub(crate) fn encode(bytes: &[u8], alphabet: Alphabet) -> String {
    let table = alphabet.table();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in bytes {
        acc = (acc << 8 | u32::from(b)) & 0xffff;
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            out.push(char::from(table[(acc >> bits) as usize & 63]));
        }
    }
    if bits > 0 {
        out.push(char::from(table[(acc << (6 - bits)) as usize & 63]));
    }
    while alphabet == Alphabet::Standard && out.len() % 4 != 0 {
        out.push('=');
    }
    out
}

/// The bytes that `text` spells in base64 of `alphabet`, or `None` if it is not that.
pub(crate) fn decode(text: &str, alphabet: Alphabet) -> Option<Vec<u8>> {
    let table = alphabet.table();
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits, mut padding) = (0u32, 0u32, 0usize);
    for c in text.bytes() {
        if alphabet == Alphabet::Standard {
            if c.is_ascii_whitespace() {
                continue;
            }
            if c == b'=' {
                padding += 1;
                continue;
            }
        }
        let v = table.iter().position(|a| *a == c)?;
        if padding > 0 {
            return None;
        }
        acc = (acc << 6 | v as u32) & 0xffff;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    match alphabet {
        Alphabet::Standard => (padding <= 2).then_some(out),
        // What is left must be the zero bits that end a final partial group.
        Alphabet::Url => (bits < 6 && acc & ((1 << bits) - 1) == 0).then_some(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Alphabet::{Standard, Url};

    #[test]
    fn both_alphabets_encode_rfc_4648s_vectors() {
        let vectors = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
            ("hello", "aGVsbG8="),
        ];
        for (plain, encoded) in vectors {
            assert_eq!(encode(plain.as_bytes(), Standard), encoded);
            assert_eq!(encode(plain.as_bytes(), Url), encoded.trim_end_matches('='));
        }
        assert_eq!(encode(b"\xfb\xff\xfe", Standard), "+//+");
        assert_eq!(encode(b"\xfb\xff\xfe", Url), "-__-");
        assert_eq!(encode(b"\xfb\xff", Url), "-_8");
    }

    #[test]
    fn standard_decodes_with_and_without_padding_and_rejects_junk() {
        assert_eq!(decode("aGVsbG8=", Standard), Some(b"hello".to_vec()));
        assert_eq!(decode("aGVs\nbG8", Standard), Some(b"hello".to_vec()));
        assert_eq!(decode("", Standard), Some(Vec::new()));
        assert_eq!(decode("aGV$", Standard), None);
        assert_eq!(decode("aG=Vs", Standard), None);
        assert_eq!(decode("aGVsbG8===", Standard), None);
        assert_eq!(decode("-__-", Standard), None, "not the URL alphabet");
    }

    #[test]
    fn url_refuses_padding_whitespace_the_standard_alphabet_and_stray_bits() {
        assert_eq!(decode("TWE", Url), Some(b"Ma".to_vec()));
        assert_eq!(decode("TWE=", Url), None);
        assert_eq!(decode("TW E", Url), None);
        assert_eq!(decode("+//+", Url), None);
        assert_eq!(
            decode("TWF", Url),
            None,
            "the last character has bits set past the data"
        );
        assert_eq!(decode("TWFuT", Url), None, "one character is no byte");
    }

    #[test]
    fn every_length_round_trips_in_both() {
        let bytes: Vec<u8> = (0..=255).collect();
        for len in 0..bytes.len() {
            for alphabet in [Standard, Url] {
                let encoded = encode(&bytes[..len], alphabet);
                if alphabet == Standard {
                    assert_eq!(encoded.len() % 4, 0);
                }
                assert_eq!(decode(&encoded, alphabet).as_deref(), Some(&bytes[..len]));
            }
        }
    }
}
