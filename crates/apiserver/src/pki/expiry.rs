//! When certificates expire: read from the certificate itself (its notAfter), so a certificate
//! put in place by hand or by an older build is judged like one issued here.
//!
//! Only the path to the validity field of an X.509 certificate is walked (RFC 5280, 4.1): a
//! small reader instead of a whole X.509 parser.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use rcgen::CertificateParams;

/// Leaf certificates (serving, node, client) are issued for a year...
pub const LEAF_VALIDITY: Duration = Duration::from_secs(365 * 86400);
/// ...and reissued at start once they expire within 90 days, as k3s does.
pub const RENEW_BEFORE: Duration = Duration::from_secs(90 * 86400);

/// Sets a leaf certificate's validity: from an hour ago (clocks differ) for [`LEAF_VALIDITY`].
pub fn leaf_validity(p: &mut CertificateParams) {
    let now = SystemTime::now();
    p.not_before = (now - Duration::from_secs(3600)).into();
    p.not_after = (now + LEAF_VALIDITY).into();
}

/// Whether the (first) certificate in `pem` expires within `window` from now. A certificate that
/// cannot be read counts as expiring, so that it is reissued.
pub fn expires_within(pem: &str, window: Duration) -> bool {
    let Some(not_after) = not_after(pem) else {
        return true;
    };
    let horizon = SystemTime::now() + window;
    let horizon = horizon
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    not_after <= horizon
}

/// The notAfter of the first certificate in `pem`, in seconds since the Unix epoch.
pub fn not_after(pem: &str) -> Option<i64> {
    let der = first_certificate_der(pem)?;
    let (certificate, _) = element(&der, SEQUENCE)?;
    let (tbs, _) = element(certificate, SEQUENCE)?;
    let mut rest = tbs;
    // version [0] EXPLICIT is optional.
    if rest.first() == Some(&0xa0) {
        rest = element(rest, 0xa0)?.1;
    }
    rest = element(rest, INTEGER)?.1; // serialNumber
    rest = element(rest, SEQUENCE)?.1; // signature algorithm
    rest = element(rest, SEQUENCE)?.1; // issuer
    let (validity, _) = element(rest, SEQUENCE)?;
    let (_, after_not_before) = any_element(validity)?;
    let (tag, value, _) = any_element_tagged(after_not_before)?;
    parse_time(tag, value)
}

const INTEGER: u8 = 0x02;
const SEQUENCE: u8 = 0x30;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

fn first_certificate_der(pem: &str) -> Option<Vec<u8>> {
    let begin = "-----BEGIN CERTIFICATE-----";
    let start = pem.find(begin)? + begin.len();
    let end = start + pem[start..].find("-----END CERTIFICATE-----")?;
    let body: String = pem[start..end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

/// The contents of the element at the start of `input` if its tag is `tag`, and what follows it.
fn element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (found, value, rest) = any_element_tagged(input)?;
    (found == tag).then_some((value, rest))
}

fn any_element(input: &[u8]) -> Option<(&[u8], &[u8])> {
    any_element_tagged(input).map(|(_, value, rest)| (value, rest))
}

/// DER: a one-byte tag (all tags used here are), a definite length, the contents.
fn any_element_tagged(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let bytes = usize::from(first & 0x7f);
        if bytes == 0 || bytes > 4 || rest.len() < bytes {
            return None;
        }
        let (len_bytes, after) = rest.split_at(bytes);
        rest = after;
        len_bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
    };
    if rest.len() < len {
        return None;
    }
    let (value, rest) = rest.split_at(len);
    Some((tag, value, rest))
}

/// UTCTime `YYMMDDHHMMSSZ` (years 1950-2049) or GeneralizedTime `YYYYMMDDHHMMSSZ`.
fn parse_time(tag: u8, value: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(value).ok()?;
    let digits = text.strip_suffix('Z')?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let num = |s: &str| s.parse::<i64>().ok();
    let (year, rest) = match (tag, digits.len()) {
        (UTC_TIME, 12) => {
            let yy = num(&digits[..2])?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &digits[2..])
        }
        (GENERALIZED_TIME, 14) => (num(&digits[..4])?, &digits[4..]),
        _ => return None,
    };
    let (month, day) = (num(&rest[0..2])?, num(&rest[2..4])?);
    let (hour, minute, second) = (num(&rest[4..6])?, num(&rest[6..8])?, num(&rest[8..10])?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second)
}

/// Days from 1970-01-01 to the given proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::KeyPair;

    fn self_signed(not_after_secs: i64) -> String {
        let mut p = CertificateParams::new(vec!["x".to_string()]).expect("params");
        p.not_before = (UNIX_EPOCH + Duration::from_secs(1_000_000_000)).into();
        p.not_after = (UNIX_EPOCH + Duration::from_secs(not_after_secs as u64)).into();
        p.self_signed(&KeyPair::generate().expect("key"))
            .expect("sign")
            .pem()
    }

    #[test]
    fn not_after_is_read_from_utc_and_generalized_times() {
        // 2031-05-06 07:08:09 UTC (UTCTime) and 2061-01-02 03:04:05 UTC (GeneralizedTime).
        for secs in [1_935_817_689, 2_871_860_645] {
            assert_eq!(not_after(&self_signed(secs)), Some(secs));
        }
    }

    #[test]
    fn expiry_is_judged_against_the_window_and_garbage_counts_as_expiring() {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs() as i64;
        assert!(expires_within(&self_signed(now + 30 * 86400), RENEW_BEFORE));
        assert!(!expires_within(
            &self_signed(now + 200 * 86400),
            RENEW_BEFORE
        ));
        assert!(expires_within("not a certificate", RENEW_BEFORE));
        assert_eq!(
            not_after("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"),
            None
        );
    }
}
