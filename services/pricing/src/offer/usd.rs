//! Exact US-dollar amounts.
//!
//! The offer file writes prices as decimal strings with up to ten places
//! (`"0.0960000000"`, `"294"`). Summing or comparing them as `f64` is fine
//! for display but not for storage or equality, so each price is also kept
//! as a fixed-point integer of 10⁻¹⁰ dollars: exact, `Copy`, no allocation,
//! and its [`Display`](std::fmt::Display) gives the text back (trailing
//! zeros trimmed).

use std::fmt;

/// Number of decimal places kept (the offer files use exactly this many).
pub const USD_SCALE: u32 = 10;
const UNITS_PER_USD: i64 = 10_000_000_000;

/// An exact non-negative amount of US dollars, in units of 10⁻¹⁰ USD.
///
/// Holds up to about 922 million dollars; the largest EC2 upfront fee is a
/// few million.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Usd(i64);

impl Usd {
    pub const ZERO: Usd = Usd(0);

    /// The amount in units of 10⁻¹⁰ USD.
    pub fn units(self) -> i64 {
        self.0
    }

    /// From units of 10⁻¹⁰ USD.
    pub fn from_units(units: i64) -> Self {
        Usd(units)
    }

    /// The nearest `f64` (correctly rounded below 2⁵³ units, i.e. ~900k USD).
    pub fn to_f64(self) -> f64 {
        self.0 as f64 / UNITS_PER_USD as f64
    }

    /// Parses the offer file's decimal text: digits, optionally `.` and up
    /// to [`USD_SCALE`] more digits (further digits must be zeros). No sign,
    /// exponent or spaces: anything else is not a price.
    pub fn parse(text: &str) -> Option<Usd> {
        Self::parse_bytes(text.as_bytes())
    }

    /// [`Usd::parse`] on bytes.
    pub fn parse_bytes(text: &[u8]) -> Option<Usd> {
        let (int, frac) = match text.iter().position(|&b| b == b'.') {
            Some(dot) if dot + 1 < text.len() => (&text[..dot], &text[dot + 1..]),
            Some(_) => return None,
            None => (text, &[][..]),
        };
        if int.is_empty()
            || !int.iter().all(u8::is_ascii_digit)
            || !frac.iter().all(u8::is_ascii_digit)
        {
            return None;
        }
        let mut units: i64 = 0;
        for &b in int {
            units = units.checked_mul(10)?.checked_add(i64::from(b - b'0'))?;
        }
        units = units.checked_mul(UNITS_PER_USD)?;
        let (kept, extra) = frac.split_at(frac.len().min(USD_SCALE as usize));
        if extra.iter().any(|&b| b != b'0') {
            return None;
        }
        let mut frac_units: i64 = 0;
        for &b in kept {
            frac_units = frac_units * 10 + i64::from(b - b'0');
        }
        for _ in kept.len()..USD_SCALE as usize {
            frac_units *= 10;
        }
        units.checked_add(frac_units).map(Usd)
    }
}

impl fmt::Display for Usd {
    /// `0.096`, `294`, `0` — the shortest exact decimal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let int = self.0 / UNITS_PER_USD;
        let frac = self.0 % UNITS_PER_USD;
        if frac == 0 {
            return write!(f, "{int}");
        }
        let digits = format!("{frac:010}");
        write!(f, "{int}.{}", digits.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_offer_texts() {
        assert_eq!(Usd::parse("0.0960000000"), Some(Usd(960_000_000)));
        assert_eq!(Usd::parse("294"), Some(Usd(2_940_000_000_000)));
        assert_eq!(Usd::parse("0.0000000001"), Some(Usd(1)));
        assert_eq!(Usd::parse("1.500000000000"), Some(Usd(15_000_000_000)));
        assert_eq!(Usd::parse("0"), Some(Usd::ZERO));
        for bad in [
            "",
            ".5",
            "5.",
            "-1",
            "+1",
            "1e3",
            " 1",
            "1 ",
            "abc",
            "0.00000000001",
            "1.2.3",
            "99999999999999999999",
        ] {
            assert_eq!(Usd::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn displays_shortest_exact_text() {
        assert_eq!(Usd::parse("0.0960000000").unwrap().to_string(), "0.096");
        assert_eq!(Usd::parse("294").unwrap().to_string(), "294");
        assert_eq!(
            Usd::parse("12.0000000001").unwrap().to_string(),
            "12.0000000001"
        );
        assert_eq!(Usd::ZERO.to_string(), "0");
        assert_eq!(Usd::parse("0.0960000000").unwrap().to_f64(), 0.096);
    }
}
