//! A narrow, fast reader for the common shape of a session payload.
//!
//! A 42 KB payload is ~4,000 numbers and ~4,000 short keys; serde's derived visitors spend most of their time
//! on the keys (each one parsed, UTF-8-checked and matched as a string) and on growing vectors. This reader
//! walks the bytes once, matches keys as byte strings and writes points straight into their vectors.
//!
//! It is an *accelerator*, never an authority: it accepts only a strict subset of what the serde path accepts
//! and gives up (`None`) on anything else — escapes in strings, exponents, numbers of more than 15 significant
//! digits, duplicate or missing fields, structs written as arrays, unknown fields holding arrays or objects,
//! nesting, trailing bytes — so the caller falls back to serde, which then either parses the body the same way
//! or produces its exact error message. Numbers are correctly rounded, as serde_json's `float_roundtrip`
//! parser (which this crate enables) returns them: up to 15 digits, a `u64` below 2^53 divided by an exact
//! power of ten is one correctly rounded IEEE operation; longer ones go through the standard library's parser.
//!
//! Why it stays (issue #12 asked for a recorded benchmark): `cargo run --release -p vigil-biometrics --example
//! parse_ab` times `Payload::from_json` against serde plus the same validation, interleaved round by round, on the
//! 45,030-byte load payload (300 rounds of 20 parses a side; medians per parse). Two runs on 2026-12-06, on the
//! 2-core machine at load average ~18.8 (seven other helpers compiling), so absolute times are inflated:
//!
//! | median per body      | `from_json` (this reader) | serde only | ratio |
//! |----------------------|---------------------------|------------|-------|
//! | parse                | 71.7 / 69.2 µs            | 808.4 / 738.2 µs | 11.3x / 10.7x |
//! | parse + 15 features  | 470.5 / 514.5 µs          | 1,047.8 / 849.9 µs | 2.2x / 1.7x |
//!
//! Scoring the same payload against a trained profile (`score_payload/42KB` in `cargo bench -p vigil-biometrics`)
//! took a median 527 µs in the same session, so without this reader parsing would be the largest single CPU cost
//! of `/api/score`; with it, parsing is about a tenth of it. The criterion bench has both sides too
//! (`Payload::from_json/42KB`, `serde_json::from_slice::<Payload>/42KB`, `serde_parse+extract/42KB`), but run one
//! after the other they were too disturbed by the neighbours' load to compare (medians 460 µs vs 3,132 µs).

use crate::payload::{Click, KeyEvent, MousePoint, Payload};

/// Digits below which the value is computed exactly by one division (a 15-digit `u64` is below 2^53).
const MAX_EXACT_DIGITS: usize = 15;
/// Most digits in a number token on the fast path (an 18-digit integer still fits an `i64`).
const MAX_TOKEN_DIGITS: usize = 18;
/// Powers of ten that are exact in `f64`.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// Parses `body` when it has the common shape; `None` means "ask serde".
pub(crate) fn parse(body: &[u8]) -> Option<Payload> {
    let mut r = Reader { b: body, i: 0 };
    let p = r.payload()?;
    r.ws();
    (r.i == body.len()).then_some(p)
}

struct Reader<'a> {
    b: &'a [u8],
    i: usize,
}

/// A number token: its value, and whether it was written as an integer.
struct Num {
    value: f64,
    integer: Option<i64>,
}

impl<'a> Reader<'a> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    /// Skips whitespace and returns the next byte without consuming it.
    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    /// A string without escapes or control characters, as raw bytes (checked as UTF-8 only where kept).
    fn raw_str(&mut self) -> Option<&'a [u8]> {
        self.eat(b'"')?;
        let start = self.i;
        loop {
            match *self.b.get(self.i)? {
                b'"' => break,
                b'\\' | 0..=0x1f => return None,
                _ => self.i += 1,
            }
        }
        let s = &self.b[start..self.i];
        self.i += 1;
        Some(s)
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        self.ws();
        let end = self.i.checked_add(word.len())?;
        (self.b.get(self.i..end)? == word).then(|| self.i = end)
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?`, at most [`MAX_TOKEN_DIGITS`] digits. Exponents are left to serde.
    fn number(&mut self) -> Option<Num> {
        self.ws();
        let start = self.i;
        let negative = self.b.get(self.i) == Some(&b'-');
        if negative {
            self.i += 1;
        }
        let mut sig: u64 = 0;
        let mut digits = 0usize;
        let mut take = |r: &mut Self| -> Option<usize> {
            let from = r.i;
            while let Some(&c @ b'0'..=b'9') = r.b.get(r.i) {
                digits += 1;
                if digits > MAX_TOKEN_DIGITS {
                    return None;
                }
                sig = sig * 10 + u64::from(c - b'0');
                r.i += 1;
            }
            (r.i > from).then_some(r.i - from)
        };
        let int_digits = take(self)?;
        // JSON forbids leading zeros ("012"); serde rejects them, so must we.
        if int_digits > 1 && self.b[self.i - int_digits] == b'0' {
            return None;
        }
        let mut frac_digits = 0;
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            frac_digits = take(self)?;
        }
        if let Some(b'e' | b'E' | b'.' | b'0'..=b'9') = self.b.get(self.i) {
            return None;
        }
        let sign = |m: f64| if negative { -m } else { m };
        if frac_digits == 0 {
            // serde reads an integer token as an integer and converts it (rounding to nearest): the same as
            // converting `sig`, which is exact below 2^63 (18 digits). "-0" is -0.0 there too.
            let v = i64::try_from(sig).ok()?;
            return Some(Num {
                value: sign(v as f64),
                integer: Some(if negative { -v } else { v }),
            });
        }
        let value = if digits <= MAX_EXACT_DIGITS {
            sign(sig as f64 / POW10[frac_digits])
        } else {
            // Beyond the exact case (e.g. `performance.now()` values like 5226.600000023842), the correctly
            // rounded value of the text, as serde_json's `float_roundtrip` parser (enabled for this crate) gives.
            std::str::from_utf8(&self.b[start..self.i])
                .ok()?
                .parse::<f64>()
                .ok()?
        };
        Some(Num {
            value,
            integer: None,
        })
    }

    fn f64(&mut self) -> Option<f64> {
        self.number().map(|n| n.value)
    }

    /// `null` (absent) or a number.
    fn opt_f64(&mut self) -> Option<Option<f64>> {
        if self.peek()? == b'n' {
            self.literal(b"null")?;
            return Some(None);
        }
        self.f64().map(Some)
    }

    /// Skips an unknown member when its value is a scalar; arrays and objects are left to serde. Its key and
    /// a string value must be UTF-8 (serde checks keys; checking values too only sends more bodies to serde).
    fn skip_unknown(&mut self, key: &[u8]) -> Option<()> {
        std::str::from_utf8(key).ok()?;
        match self.peek()? {
            b'"' => std::str::from_utf8(self.raw_str()?).ok().map(drop),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => self.number().map(drop),
        }
    }

    /// Calls `member` for each `"key": value` of an object; `member` must consume the value.
    fn object(&mut self, mut member: impl FnMut(&mut Self, &[u8]) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(());
        }
        loop {
            let key = self.raw_str()?;
            self.eat(b':')?;
            member(self, key)?;
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// Calls `item` for each element of an array.
    fn array(&mut self, mut item: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.eat(b'[')?;
        if self.peek()? == b']' {
            self.i += 1;
            return Some(());
        }
        loop {
            item(self)?;
            match self.peek()? {
                b',' => self.i += 1,
                b']' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    fn payload(&mut self) -> Option<Payload> {
        let (mut start, mut end) = (None, None);
        let (mut keys, mut paths, mut clicks) = (None, None, None);
        self.object(|r, key| match key {
            b"startTimestamp" => set(&mut start, r.f64()?),
            b"endTimestamp" => set(&mut end, r.f64()?),
            b"keyEvents" => set(&mut keys, r.key_events()?),
            b"mousePaths" => set(&mut paths, r.mouse_paths()?),
            b"clicks" => set(&mut clicks, r.clicks()?),
            _ => r.skip_unknown(key),
        })?;
        Some(Payload {
            start_timestamp: start?,
            end_timestamp: end?,
            key_events: keys?,
            mouse_paths: paths?,
            clicks: clicks?,
        })
    }

    fn key_events(&mut self) -> Option<Vec<KeyEvent>> {
        let mut out = Vec::with_capacity(64);
        self.array(|r| {
            let (mut code, mut down, mut up) = (None, None, None);
            r.object(|r, key| match key {
                b"code" => {
                    let s = std::str::from_utf8(r.raw_str()?).ok()?;
                    set(&mut code, s.to_owned())
                }
                b"downTime" => set(&mut down, r.f64()?),
                b"upTime" => set(&mut up, r.f64()?),
                _ => r.skip_unknown(key),
            })?;
            out.push(KeyEvent {
                code: code?,
                down_time: down?,
                up_time: up?,
            });
            Some(())
        })?;
        Some(out)
    }

    fn mouse_paths(&mut self) -> Option<Vec<Vec<MousePoint>>> {
        let mut out = Vec::with_capacity(16);
        self.array(|r| {
            let mut path = Vec::with_capacity(128);
            r.array(|r| {
                let (mut t, mut x, mut y) = (None, None, None);
                r.object(|r, key| match key {
                    b"t" => set(&mut t, r.f64()?),
                    b"x" => set(&mut x, r.f64()?),
                    b"y" => set(&mut y, r.f64()?),
                    _ => r.skip_unknown(key),
                })?;
                path.push(MousePoint {
                    t: t?,
                    x: x?,
                    y: y?,
                });
                Some(())
            })?;
            out.push(path);
            Some(())
        })?;
        Some(out)
    }

    fn clicks(&mut self) -> Option<Vec<Click>> {
        let mut out = Vec::with_capacity(16);
        self.array(|r| {
            let (mut t, mut x, mut y, mut button, mut duration) = (None, None, None, None, None);
            r.object(|r, key| match key {
                b"t" => set(&mut t, r.f64()?),
                b"x" => set(&mut x, r.opt_f64()?),
                b"y" => set(&mut y, r.opt_f64()?),
                b"button" => {
                    let b = if r.peek()? == b'n' {
                        r.literal(b"null")?;
                        None
                    } else {
                        Some(r.number()?.integer?)
                    };
                    set(&mut button, b)
                }
                b"duration" => set(&mut duration, r.f64()?),
                _ => r.skip_unknown(key),
            })?;
            out.push(Click {
                t: t?,
                x: x.flatten(),
                y: y.flatten(),
                button: button.flatten(),
                duration: duration?,
            });
            Some(())
        })?;
        Some(out)
    }
}

/// Stores a field's value; a second occurrence (which serde rejects as a duplicate field) gives up.
fn set<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(value);
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::{Persona, SessionGenerator, load_payload};

    /// What serde makes of a body (the authority).
    fn serde(body: &[u8]) -> Option<Payload> {
        serde_json::from_slice(body).ok()
    }

    #[test]
    fn agrees_with_serde_on_generated_sessions_bit_for_bit() {
        let mut g = SessionGenerator::new(Persona::alice(), 3);
        let mut bodies: Vec<Vec<u8>> = (0..200)
            .map(|_| serde_json::to_vec(&g.next_payload()).unwrap())
            .collect();
        bodies.push(serde_json::to_vec(&load_payload(Persona::alice(), 1)).unwrap());
        bodies.push(serde_json::to_vec_pretty(&load_payload(Persona::alice(), 2)).unwrap());
        for body in &bodies {
            let fast = parse(body).expect("the common shape takes the fast path");
            let slow = serde(body).unwrap();
            // `PartialEq` on f64 would equate 0.0 and -0.0: compare the bits through the JSON text.
            assert_eq!(
                serde_json::to_string(&fast).unwrap(),
                serde_json::to_string(&slow).unwrap()
            );
            assert_eq!(fast, slow);
        }
    }

    #[test]
    fn the_load_test_fixture_takes_the_fast_path() {
        let body = include_bytes!("../../../scripts/maxidom/fixtures/load_payload.json");
        assert_eq!(parse(body), serde(body));
        assert!(parse(body).is_some());
    }

    #[test]
    fn numbers_match_serde_exactly() {
        for n in [
            "0",
            "-0",
            "-0.0",
            "0.5",
            "512",
            "-3",
            "518.5",
            "183254.5",
            "191730.25",
            "0.1",
            "0.30000000000000",
            "123456789012345",
            "-12345678.9012345",
            "999999999999999",
            "1.00000000000001",
            "7.25",
            "0.00000000000001",
            "-1000000.5",
            "5226.600000023842",
            "1543.2999999523163",
            "0.30000000000000004",
            "123456789012345678",
            "-9007199254740993",
            "9007199254740993.5",
            "2.2250738585072014",
            "0.10000000000000005",
        ] {
            let body = format!(
                r#"{{"startTimestamp":{n},"endTimestamp":1,"keyEvents":[],"mousePaths":[[{{"t":{n},"x":{n},"y":1}}]],"clicks":[]}}"#
            );
            let fast = parse(body.as_bytes()).unwrap_or_else(|| panic!("{n}"));
            let slow = serde(body.as_bytes()).unwrap();
            assert_eq!(
                fast.start_timestamp.to_bits(),
                slow.start_timestamp.to_bits(),
                "{n}"
            );
            assert_eq!(
                fast.mouse_paths[0][0].x.to_bits(),
                slow.mouse_paths[0][0].x.to_bits(),
                "{n}"
            );
        }
    }

    #[test]
    fn gives_up_on_everything_outside_the_common_shape() {
        let wrap = |start: &str, rest: &str| {
            format!(
                r#"{{"startTimestamp":{start},"endTimestamp":1,"keyEvents":[],"mousePaths":[],"clicks":[]{rest}}}"#
            )
        };
        for body in [
            wrap("1e3", ""),
            wrap("1E3", ""),
            wrap("1234567890123456789", ""),
            wrap("0.123456789012345678", ""),
            wrap("012", ""),
            wrap("1.", ""),
            wrap(".5", ""),
            wrap("+1", ""),
            wrap("--1", ""),
            wrap("NaN", ""),
            wrap("null", ""),
            wrap("\"1\"", ""),
            wrap("1", r#","startTimestamp":2"#),
            wrap("1", r#","extra":[1]"#),
            wrap("1", r#","extra":{}"#),
            wrap("1", r#","extra":"a\"b""#),
            wrap("1", r#","extra":tru"#),
            wrap("1", r#","extra":1e5"#),
            wrap("1", ",").to_string(),
            format!("{} x", wrap("1", "")),
            r#"{"endTimestamp":1,"keyEvents":[],"mousePaths":[],"clicks":[]}"#.into(),
            r#"{"startTimestamp":0,"endTimestamp":1,"keyEvents":[{"code":"K\u0065y","downTime":1,"upTime":2}],"mousePaths":[],"clicks":[]}"#.into(),
            r#"{"startTimestamp":0,"endTimestamp":1,"keyEvents":[],"mousePaths":[[[1,2,3]]],"clicks":[]}"#.into(),
            r#"{"startTimestamp":0,"endTimestamp":1,"keyEvents":[],"mousePaths":[],"clicks":[{"t":1,"duration":2,"button":0.5}]}"#.into(),
            r#"{"startTimestamp":0,"endTimestamp":1,"keyEvents":[],"mousePaths":[[{"t":1,"x":2}]],"clicks":[]}"#.into(),
            r#"{"startTimestamp":0,"endTimestamp":1,"keyEvents":[],"mousePaths":[],"clicks":[],}"#.into(),
            "[]".into(),
            "".into(),
            "{".into(),
        ] {
            assert!(parse(body.as_bytes()).is_none(), "{body}");
        }
        // A raw control character inside a string, and invalid UTF-8 in a kept string.
        let mut ctl =
            br#"{"startTimestamp":0,"endTimestamp":1,"keyEvents":[{"code":"Key?","downTime":1,"upTime":2}],"mousePaths":[],"clicks":[]}"#
                .to_vec();
        let q = ctl.iter().position(|&c| c == b'?').unwrap();
        ctl[q] = 0x01;
        assert!(parse(&ctl).is_none());
        ctl[q] = 0xff;
        assert!(parse(&ctl).is_none());
        let mut key = wrap("1", r#","k?":1"#).into_bytes();
        let q = key.iter().position(|&c| c == b'?').unwrap();
        key[q] = 0xff;
        assert!(parse(&key).is_none());
    }

    #[test]
    fn takes_optional_and_unknown_fields_like_serde() {
        let body = br#" { "heartbeatCount" : 0 , "startTimestamp":1.5,"endTimestamp":-2,"note":"hi","flag":true,"none":null,
            "keyEvents":[{"code":"KeyT","downTime":1,"upTime":2,"repeat":false}],
            "mousePaths":[[],[{"t":1,"x":-0,"y":2.25,"pressure":0.5}]],
            "clicks":[{"t":5,"duration":80},{"t":6,"x":null,"y":1,"button":-2,"duration":0.5}] } "#;
        let fast = parse(body).unwrap();
        assert_eq!(fast, serde(body).unwrap());
        assert_eq!(fast.clicks[1].button, Some(-2));
        assert_eq!(fast.clicks[0].x, None);
    }
}
