//! Resource quantities ("500m", "1Gi", "1e3") as upstream's `resource.Quantity` parses, compares
//! and prints them: [`Quantity::parse`], [`Quantity::canonical`], and the helpers that bring a
//! resource list into upstream's stored form ([`canonicalize_list`]).
//!
//! Values are exact decimals (`mantissa × 10^exponent`, 128-bit mantissa), which covers every
//! quantity a cluster meets; larger ones are rejected rather than silently rounded.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity as QuantityString;

/// The message upstream's decoder gives for a malformed quantity.
pub const FORMAT_ERROR: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";
/// The message for a well-formed number with an unknown suffix.
pub const SUFFIX_ERROR: &str = "unable to parse quantity's suffix";

/// How a quantity was written, which decides how it is printed back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// "1k", "500m", "1": powers of 1000.
    DecimalSi,
    /// "1Ki", "1Gi": powers of 1024.
    BinarySi,
    /// "1e3".
    DecimalExponent,
}

/// Why a string is not a quantity; the message is upstream's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("{}", FORMAT_ERROR)]
    Format,
    #[error("{}", SUFFIX_ERROR)]
    Suffix,
}

/// A parsed quantity: `mantissa × 10^exponent`, plus the format it was written in.
#[derive(Clone, Copy, Debug)]
pub struct Quantity {
    mantissa: i128,
    exponent: i32,
    format: Format,
}

/// Precision kept on parse (upstream rounds up to nano units).
const NANO: i32 = -9;
/// Precision of stored resource lists (upstream's `SetDefaults_ResourceList`).
const MILLI: i32 = -3;

fn pow10(n: u32) -> Option<i128> {
    10i128.checked_pow(n)
}

impl Quantity {
    pub const ZERO: Quantity = Quantity {
        mantissa: 0,
        exponent: 0,
        format: Format::DecimalSi,
    };

    /// A whole number in decimal SI form.
    pub fn from_int(v: i64) -> Self {
        Self {
            mantissa: i128::from(v),
            exponent: 0,
            format: Format::DecimalSi,
        }
    }

    /// Parses upstream's grammar: `[+-]digits[.digits]` then an optional suffix
    /// (`n u m k M G T P E`, `Ki .. Ei`, or `e<int>`/`E<int>`).
    pub fn parse(s: &str) -> Result<Self, Error> {
        let b = s.as_bytes();
        let mut pos = 0;
        let negative = match b.first() {
            Some(b'-') => {
                pos = 1;
                true
            }
            Some(b'+') => {
                pos = 1;
                false
            }
            _ => false,
        };
        let mut mantissa: i128 = 0;
        let mut exponent: i32 = 0;
        let mut digits = 0;
        let mut seen_dot = false;
        let mut truncated = false;
        while pos < b.len() {
            match b[pos] {
                c @ b'0'..=b'9' => {
                    digits += 1;
                    let next = mantissa
                        .checked_mul(10)
                        .and_then(|m| m.checked_add(i128::from(c - b'0')));
                    match next {
                        Some(m) if m < 10i128.pow(36) => {
                            mantissa = m;
                            if seen_dot {
                                exponent -= 1;
                            }
                        }
                        // Fraction digits beyond 36 significant ones lie far below the nano
                        // precision kept; remember only whether any was non-zero.
                        _ if seen_dot => truncated |= c != b'0',
                        _ => return Err(Error::Format),
                    }
                }
                b'.' if !seen_dot => seen_dot = true,
                _ => break,
            }
            pos += 1;
        }
        if truncated {
            mantissa += 1;
        }
        if digits == 0 {
            return Err(Error::Format);
        }
        let suffix = &s[pos..];
        // The suffix must itself match upstream's pattern `[eEinumkKMGTP]*[-+]?[0-9]*`.
        let sb = suffix.as_bytes();
        let mut i = 0;
        while i < sb.len() && b"eEinumkKMGTP".contains(&sb[i]) {
            i += 1;
        }
        if i < sb.len() && (sb[i] == b'-' || sb[i] == b'+') {
            i += 1;
        }
        while i < sb.len() && sb[i].is_ascii_digit() {
            i += 1;
        }
        if i != sb.len() {
            return Err(Error::Format);
        }
        let (format, dec_exp, bin_pow) = match suffix {
            "" => (Format::DecimalSi, 0, 0),
            "n" => (Format::DecimalSi, -9, 0),
            "u" => (Format::DecimalSi, -6, 0),
            "m" => (Format::DecimalSi, -3, 0),
            "k" => (Format::DecimalSi, 3, 0),
            "M" => (Format::DecimalSi, 6, 0),
            "G" => (Format::DecimalSi, 9, 0),
            "T" => (Format::DecimalSi, 12, 0),
            "P" => (Format::DecimalSi, 15, 0),
            "E" => (Format::DecimalSi, 18, 0),
            "Ki" => (Format::BinarySi, 0, 1),
            "Mi" => (Format::BinarySi, 0, 2),
            "Gi" => (Format::BinarySi, 0, 3),
            "Ti" => (Format::BinarySi, 0, 4),
            "Pi" => (Format::BinarySi, 0, 5),
            "Ei" => (Format::BinarySi, 0, 6),
            other => {
                let rest = other
                    .strip_prefix('e')
                    .or_else(|| other.strip_prefix('E'))
                    .filter(|r| !r.is_empty())
                    .ok_or(Error::Suffix)?;
                let e: i32 = rest.parse().map_err(|_| Error::Suffix)?;
                if !(-100..=100).contains(&e) {
                    return Err(Error::Format);
                }
                (Format::DecimalExponent, e, 0)
            }
        };
        for _ in 0..bin_pow {
            mantissa = mantissa.checked_mul(1024).ok_or(Error::Format)?;
        }
        if negative {
            mantissa = -mantissa;
        }
        let mut q = Quantity {
            mantissa,
            exponent: exponent + dec_exp,
            format,
        };
        q.round_up_to(NANO);
        // Upstream caps magnitudes at 2^63-1.
        let max = Quantity::from_int(i64::MAX);
        if q.cmp(&max) == Ordering::Greater {
            q.mantissa = max.mantissa;
            q.exponent = 0;
        } else if q.mantissa < 0 && Quantity::from_int(-i64::MAX).cmp(&q) == Ordering::Greater {
            q.mantissa = -max.mantissa;
            q.exponent = 0;
        }
        // Binary values below one unit print better in decimal; upstream switches too.
        if q.format == Format::BinarySi
            && q.mantissa > 0
            && q.cmp(&Quantity::from_int(1)) == Ordering::Less
        {
            q.format = Format::DecimalSi;
        }
        Ok(q)
    }

    pub fn format(&self) -> Format {
        self.format
    }

    pub fn is_zero(&self) -> bool {
        self.mantissa == 0
    }

    pub fn is_negative(&self) -> bool {
        self.mantissa < 0
    }

    /// Rounds away from zero to a multiple of `10^scale` (upstream's `RoundUp`).
    pub fn round_up_to(&mut self, scale: i32) {
        if self.exponent >= scale {
            return;
        }
        let shift = (scale - self.exponent) as u32;
        match pow10(shift) {
            Some(div) => {
                let q = self.mantissa / div;
                let r = self.mantissa % div;
                self.mantissa = if r > 0 {
                    q + 1
                } else if r < 0 {
                    q - 1
                } else {
                    q
                };
            }
            None => {
                self.mantissa = self.mantissa.signum();
            }
        }
        self.exponent = scale;
    }

    /// Both mantissas at the smaller exponent, when that fits.
    fn aligned(&self, other: &Quantity) -> Option<(i128, i128, i32)> {
        let e = self.exponent.min(other.exponent);
        let a = self
            .mantissa
            .checked_mul(pow10((self.exponent - e) as u32)?)?;
        let b = other
            .mantissa
            .checked_mul(pow10((other.exponent - e) as u32)?)?;
        Some((a, b, e))
    }

    fn as_f64(&self) -> f64 {
        self.mantissa as f64 * 10f64.powi(self.exponent)
    }

    /// Sum of two quantities, in the format of `self`.
    pub fn add(&self, other: &Quantity) -> Quantity {
        match self.aligned(other) {
            Some((a, b, e)) => match a.checked_add(b) {
                Some(m) => Quantity {
                    mantissa: m,
                    exponent: e,
                    format: self.format,
                },
                None => *self,
            },
            None => {
                if self.mantissa == 0 {
                    *other
                } else {
                    *self
                }
            }
        }
    }

    /// The value rounded up to a whole number (upstream's `Value`).
    pub fn value(&self) -> i128 {
        self.scaled_value(0)
    }

    /// The value in thousandths, rounded up (upstream's `MilliValue`).
    pub fn milli_value(&self) -> i128 {
        self.scaled_value(MILLI)
    }

    /// The value in units of 10^scale: rounded up when the quantity is finer than that,
    /// multiplied out (saturating) when it is coarser.
    fn scaled_value(&self, scale: i32) -> i128 {
        let mut q = *self;
        if q.exponent > scale {
            let factor = pow10((q.exponent - scale) as u32).unwrap_or(i128::MAX);
            return q.mantissa.saturating_mul(factor);
        }
        q.round_up_to(scale);
        q.mantissa
    }

    /// Whether the value is a whole number.
    pub fn is_integer(&self) -> bool {
        let mut q = *self;
        q.round_up_to(0);
        q.cmp(self) == Ordering::Equal
    }

    /// The form upstream prints and stores: "1k" for 1000, "500m", "1536Mi", "1e3".
    pub fn canonical(&self) -> String {
        if self.mantissa == 0 {
            return "0".to_string();
        }
        if self.format == Format::BinarySi {
            let small = self.cmp(&Quantity::from_int(1024)) == Ordering::Less
                && self.cmp(&Quantity::from_int(-1024)) == Ordering::Greater;
            if !small && self.is_integer() {
                if let Some(s) = self.binary_form() {
                    return s;
                }
            }
        }
        let (mut m, mut e) = (self.mantissa, self.exponent);
        while m % 10 == 0 {
            m /= 10;
            e += 1;
        }
        match e.rem_euclid(3) {
            1 => match m.checked_mul(10) {
                Some(v) => {
                    m = v;
                    e -= 1;
                }
                None => return format!("{m}e{e}"),
            },
            2 => match m.checked_mul(100) {
                Some(v) => {
                    m = v;
                    e -= 2;
                }
                None => return format!("{m}e{e}"),
            },
            _ => {}
        }
        let suffix = match (self.format, e) {
            (_, 0) => String::new(),
            (Format::DecimalExponent, e) => format!("e{e}"),
            (_, -9) => "n".into(),
            (_, -6) => "u".into(),
            (_, -3) => "m".into(),
            (_, 3) => "k".into(),
            (_, 6) => "M".into(),
            (_, 9) => "G".into(),
            (_, 12) => "T".into(),
            (_, 15) => "P".into(),
            (_, 18) => "E".into(),
            (_, e) => format!("e{e}"),
        };
        format!("{m}{suffix}")
    }

    fn binary_form(&self) -> Option<String> {
        let mut v = if self.exponent >= 0 {
            self.mantissa
                .checked_mul(pow10(self.exponent.unsigned_abs())?)?
        } else {
            self.mantissa / pow10(self.exponent.unsigned_abs())?
        };
        let mut n = 0;
        while n < 6 && v % 1024 == 0 {
            v /= 1024;
            n += 1;
        }
        let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][n];
        Some(format!("{v}{suffix}"))
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    /// Compares values, whatever their format.
    fn cmp(&self, other: &Self) -> Ordering {
        match self.aligned(other) {
            Some((a, b, _)) => a.cmp(&b),
            None => self.as_f64().total_cmp(&other.as_f64()),
        }
    }
}

impl std::fmt::Display for Quantity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.canonical())
    }
}

/// Parses a k8s-openapi quantity string.
pub fn parse(q: &QuantityString) -> Result<Quantity, Error> {
    Quantity::parse(&q.0)
}

/// A quantity string in thousandths, rounded up (CPU in millicores), for consumers outside
/// validation (the node agent's cgroups, flags); None when it does not parse or overflows.
pub fn milli_value_of(q: &str) -> Option<i64> {
    Quantity::parse(q)
        .ok()
        .and_then(|v| i64::try_from(v.milli_value()).ok())
}

/// A quantity string as a whole number, rounded up (memory in bytes); None when it does not
/// parse or overflows.
pub fn value_of(q: &str) -> Option<i64> {
    Quantity::parse(q)
        .ok()
        .and_then(|v| i64::try_from(v.value()).ok())
}

/// The canonical string of `q` as upstream prints it, or the text as given when it does not parse.
pub fn display(q: &QuantityString) -> String {
    parse(q)
        .map(|v| v.canonical())
        .unwrap_or_else(|_| q.0.clone())
}

/// Rewrites a quantity into upstream's stored form (parse precision only).
pub fn canonicalize(q: &mut QuantityString) {
    if let Ok(v) = parse(q) {
        q.0 = v.canonical();
    }
}

/// Rewrites a resource list as upstream stores it: every value rounded up to milli units and
/// printed canonically (`SetDefaults_ResourceList` plus serialization).
pub fn canonicalize_list(list: &mut BTreeMap<String, QuantityString>) {
    for q in list.values_mut() {
        if let Ok(mut v) = parse(q) {
            v.round_up_to(MILLI);
            q.0 = v.canonical();
        }
    }
}

/// [`canonicalize_list`] on an optional list.
pub fn canonicalize_opt_list(list: &mut Option<BTreeMap<String, QuantityString>>) {
    if let Some(l) = list.as_mut() {
        canonicalize_list(l);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn canon(s: &str) -> String {
        let mut v = Quantity::parse(s).expect("parses");
        v.round_up_to(MILLI);
        v.canonical()
    }

    #[test]
    fn canonical_forms_match_upstream() {
        assert_eq!(canon("1000"), "1k");
        assert_eq!(canon("1000m"), "1");
        assert_eq!(canon("0.5"), "500m");
        assert_eq!(canon("1.5"), "1500m");
        assert_eq!(canon("100Mi"), "100Mi");
        assert_eq!(canon("1024Mi"), "1Gi");
        assert_eq!(canon("1.5Gi"), "1536Mi");
        assert_eq!(canon("0.5Ki"), "512");
        assert_eq!(canon("1e3"), "1e3");
        assert_eq!(canon("128974848"), "128974848");
        assert_eq!(canon("0"), "0");
        assert_eq!(canon("0.0001"), "1m");
        assert_eq!(canon("250m"), "250m");
        assert_eq!(canon("2"), "2");
        assert_eq!(canon("10G"), "10G");
        assert_eq!(canon("1E"), "1E");
        assert_eq!(canon("100E"), "9223372036854775807");
    }

    #[test]
    fn malformed_quantities_are_rejected_with_upstream_messages() {
        assert_eq!(Quantity::parse("abc"), Err(Error::Format));
        assert_eq!(Quantity::parse(""), Err(Error::Format));
        assert_eq!(Quantity::parse("1Gb"), Err(Error::Format));
        assert_eq!(Quantity::parse("1K"), Err(Error::Suffix));
        assert_eq!(Error::Format.to_string(), FORMAT_ERROR);
    }

    #[test]
    fn comparison_ignores_format() {
        let a = Quantity::parse("1Gi").expect("q");
        let b = Quantity::parse("1073741824").expect("q");
        assert_eq!(a, b);
        assert!(Quantity::parse("500m").expect("q") < Quantity::parse("1").expect("q"));
        assert!(Quantity::parse("-1").expect("q").is_negative());
    }

    #[test]
    fn values_round_up() {
        let q = Quantity::parse("1500m").expect("q");
        assert_eq!(q.value(), 2);
        assert_eq!(q.milli_value(), 1500);
        assert!(!q.is_integer());
        assert!(Quantity::parse("2k").expect("q").is_integer());
    }

    proptest! {
        #[test]
        fn parsing_never_panics(s in "\\PC{0,24}") {
            let _ = Quantity::parse(&s).map(|q| q.canonical());
        }

        #[test]
        fn canonical_form_parses_back_to_the_same_value(m in -1_000_000_000i64..1_000_000_000, suffix in prop::sample::select(vec!["", "m", "k", "M", "Ki", "Mi", "Gi", "e3", "u"])) {
            let s = format!("{m}{suffix}");
            let q = Quantity::parse(&s).expect("parses");
            let back = Quantity::parse(&q.canonical()).expect("canonical parses");
            prop_assert_eq!(q, back);
        }
    }

    #[test]
    fn milli_and_whole_values_scale_coarse_quantities_up() {
        let q = |s: &str| Quantity::parse(s).expect("parses");
        assert_eq!(q("110").milli_value(), 110_000);
        assert_eq!(q("2k").value(), 2000);
        assert_eq!(q("1500m").value(), 2);
        assert_eq!(q("1500m").milli_value(), 1500);
        assert_eq!(q("1Mi").value(), 1_048_576);
    }

    #[test]
    fn strings_convert_to_rounded_up_units_for_consumers() {
        assert_eq!(milli_value_of("100m"), Some(100));
        assert_eq!(milli_value_of("0.5"), Some(500));
        assert_eq!(milli_value_of("1u"), Some(1));
        assert_eq!(value_of("64Mi"), Some(64 * 1024 * 1024));
        assert_eq!(value_of("1G"), Some(1_000_000_000));
        assert_eq!(value_of("129e6"), Some(129_000_000));
        assert_eq!(value_of("12x"), None);
    }
}
