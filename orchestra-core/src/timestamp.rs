//! Timestamps serialized the way chrono serializes them (RFC 3339, `Z`,
//! fractional seconds in 3, 6 or 9 digits as needed), without chrono's
//! trip through `fmt`.
//!
//! A session write serializes every message's and every step's timestamp,
//! and the formatting machinery made them a large share of it. The output is
//! byte for byte chrono's; the rare values this does not format itself (a
//! leap second, a year outside 0–9999) go through chrono.

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::Serializer;

/// `#[serde(serialize_with = "crate::timestamp::serialize")]`.
pub(crate) fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    let mut buf = [0u8; 30];
    match format(t, &mut buf) {
        Some(text) => s.serialize_str(text),
        None => serde::Serialize::serialize(t, s),
    }
}

/// [`serialize`] for an optional timestamp (with `skip_serializing_if`).
pub(crate) fn serialize_option<S: Serializer>(
    t: &Option<DateTime<Utc>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => serialize(t, s),
        None => s.serialize_none(),
    }
}

/// A timestamp to hand to hand-written `Serialize` impls.
#[cfg(feature = "redis")]
pub(crate) struct Timestamp<'a>(pub &'a DateTime<Utc>);

#[cfg(feature = "redis")]
impl serde::Serialize for Timestamp<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize(self.0, s)
    }
}

/// Formats `t` into `buf`; `None` for what only chrono formats.
fn format<'b>(t: &DateTime<Utc>, buf: &'b mut [u8; 30]) -> Option<&'b str> {
    let year = t.year();
    let nanos = t.nanosecond();
    if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
        return None;
    }
    write_digits(buf, 0, year as u32, 4);
    // Fixed positions: YYYY-MM-DDTHH:MM:SS
    buf[4] = b'-';
    write_digits(buf, 5, t.month(), 2);
    buf[7] = b'-';
    write_digits(buf, 8, t.day(), 2);
    buf[10] = b'T';
    write_digits(buf, 11, t.hour(), 2);
    buf[13] = b':';
    write_digits(buf, 14, t.minute(), 2);
    buf[16] = b':';
    write_digits(buf, 17, t.second(), 2);
    let mut n = 19;
    let (fraction, digits) = if nanos == 0 {
        (0, 0)
    } else if nanos.is_multiple_of(1_000_000) {
        (nanos / 1_000_000, 3)
    } else if nanos.is_multiple_of(1_000) {
        (nanos / 1_000, 6)
    } else {
        (nanos, 9)
    };
    if digits > 0 {
        buf[n] = b'.';
        write_digits(buf, n + 1, fraction, digits);
        n += 1 + digits as usize;
    }
    buf[n] = b'Z';
    std::str::from_utf8(&buf[..n + 1]).ok()
}

fn write_digits(buf: &mut [u8; 30], at: usize, mut value: u32, digits: u32) {
    for i in (0..digits as usize).rev() {
        buf[at + i] = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveDate, TimeZone};

    use super::*;

    fn ours(t: &DateTime<Utc>) -> String {
        serialize(t, serde_json::value::Serializer)
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn chrono(t: &DateTime<Utc>) -> String {
        serde_json::to_value(t)
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn matches_chrono_byte_for_byte() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let secs = (next() % 253_402_300_799) as i64; // 1970 up to 9999-12-31
            let nanos = match next() % 4 {
                0 => 0,
                1 => (next() % 1000) as u32 * 1_000_000,
                2 => (next() % 1_000_000) as u32 * 1_000,
                _ => (next() % 1_000_000_000) as u32,
            };
            let t = Utc.timestamp_opt(secs, nanos).unwrap();
            assert_eq!(ours(&t), chrono(&t), "{secs} {nanos}");
        }
        for t in [
            Utc.timestamp_opt(0, 0).unwrap(),
            Utc.timestamp_opt(0, 1).unwrap(),
            Utc.timestamp_opt(0, 10_000_000).unwrap(),
            Utc::now(),
            DateTime::<Utc>::MIN_UTC,
            DateTime::<Utc>::MAX_UTC,
        ] {
            assert_eq!(ours(&t), chrono(&t));
        }
    }

    #[test]
    fn leap_seconds_and_far_years_are_left_to_chrono() {
        let leap = NaiveDate::from_ymd_opt(2016, 12, 31)
            .unwrap()
            .and_hms_nano_opt(23, 59, 59, 1_500_000_000)
            .unwrap()
            .and_utc();
        assert_eq!(ours(&leap), chrono(&leap));
        let far = NaiveDate::from_ymd_opt(12_345, 1, 2)
            .unwrap()
            .and_hms_opt(3, 4, 5)
            .unwrap()
            .and_utc();
        assert_eq!(ours(&far), chrono(&far));
        let none: Option<DateTime<Utc>> = None;
        assert!(
            serialize_option(&none, serde_json::value::Serializer)
                .unwrap()
                .is_null()
        );
    }
}
