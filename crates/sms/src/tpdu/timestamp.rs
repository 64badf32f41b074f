//! Service-centre time stamps (TP-SCTS, TP-DT and absolute TP-VP): seven semi-octet pairs
//! `YY MM DD hh mm ss TZ`, 3GPP TS 23.040 §9.2.3.11.

use serde::{Deserialize, Serialize};

use super::DecodeError;

/// A TPDU time stamp: local time of the service centre and its offset from UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Timestamp {
    /// Full year; the TPDU carries two digits, read as 2000–2099.
    pub year: u16,
    /// 1–12.
    pub month: u8,
    /// 1–31, valid for the month.
    pub day: u8,
    /// 0–23.
    pub hour: u8,
    /// 0–59.
    pub minute: u8,
    /// 0–59.
    pub second: u8,
    /// Offset from UTC in quarters of an hour, −79…79.
    pub offset_quarters: i8,
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        _ => 0,
    }
}

/// A semi-octet pair, low nibble the tens digit (3GPP TS 23.040 §9.2.3.11).
fn swapped_bcd(b: u8) -> Option<u8> {
    let (tens, units) = (b & 0x0F, b >> 4);
    (tens <= 9 && units <= 9).then(|| tens * 10 + units)
}

fn to_swapped_bcd(v: u8) -> u8 {
    let v = v % 100;
    (v / 10) | ((v % 10) << 4)
}

impl Timestamp {
    /// Reads the 7 octets. Refuses digits above 9 and impossible dates or times.
    pub fn decode(octets: [u8; 7]) -> Result<Self, DecodeError> {
        let [y, mo, d, h, mi, s, tz] = octets;
        let f = |b| swapped_bcd(b).ok_or(DecodeError::Timestamp);
        // Time zone: bit 3 is the sign; the rest is swapped BCD with 3 bits of tens.
        let quarters = swapped_bcd(tz & 0xF7).ok_or(DecodeError::Timestamp)?;
        let magnitude = i8::try_from(quarters).map_err(|_| DecodeError::Timestamp)?;
        let t = Timestamp {
            year: 2000u16.saturating_add(u16::from(f(y)?)),
            month: f(mo)?,
            day: f(d)?,
            hour: f(h)?,
            minute: f(mi)?,
            second: f(s)?,
            offset_quarters: if tz & 0x08 != 0 {
                -magnitude
            } else {
                magnitude
            },
        };
        if t.is_valid() {
            Ok(t)
        } else {
            Err(DecodeError::Timestamp)
        }
    }

    /// Whether every field is in range (the offset at most ±79 quarters).
    pub fn is_valid(&self) -> bool {
        (2000..=2099).contains(&self.year)
            && (1..=12).contains(&self.month)
            && (1..=days_in_month(self.year, self.month)).contains(&self.day)
            && self.hour < 24
            && self.minute < 60
            && self.second < 60
            && (-79..=79).contains(&self.offset_quarters)
    }

    /// The 7 octets. Fields out of range are written modulo 100 (check [`Self::is_valid`]).
    pub fn encode(&self) -> [u8; 7] {
        let yy = u8::try_from(self.year % 100).unwrap_or(0);
        let q = self.offset_quarters.unsigned_abs().min(79);
        let mut tz = to_swapped_bcd(q);
        if self.offset_quarters < 0 {
            tz |= 0x08;
        }
        [
            to_swapped_bcd(yy),
            to_swapped_bcd(self.month),
            to_swapped_bcd(self.day),
            to_swapped_bcd(self.hour),
            to_swapped_bcd(self.minute),
            to_swapped_bcd(self.second),
            tz,
        ]
    }

    /// RFC 3339 text with the service centre's offset, e.g. `2024-03-05T14:30:00+01:00`.
    pub fn to_rfc3339(&self) -> String {
        let minutes = i32::from(self.offset_quarters) * 15;
        let sign = if minutes < 0 { '-' } else { '+' };
        let m = minutes.unsigned_abs();
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{}{:02}:{:02}",
            self.year,
            self.month,
            self.day,
            self.hour,
            self.minute,
            self.second,
            sign,
            m / 60,
            m % 60
        )
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn decodes_positive_and_negative_offsets() {
        // 2024-03-05 14:30:59, +01:00 (4 quarters → swapped "40").
        let t = Timestamp::decode([0x42, 0x30, 0x50, 0x41, 0x03, 0x95, 0x40]).unwrap();
        assert_eq!(t.to_rfc3339(), "2024-03-05T14:30:59+01:00");
        assert_eq!(t.encode(), [0x42, 0x30, 0x50, 0x41, 0x03, 0x95, 0x40]);
        // -05:00 = 20 quarters → "02" swapped, sign bit 0x08 → 0x0A.
        let t = Timestamp::decode([0x42, 0x30, 0x50, 0x41, 0x03, 0x95, 0x0A]).unwrap();
        assert_eq!(t.offset_quarters, -20);
        assert_eq!(t.to_rfc3339(), "2024-03-05T14:30:59-05:00");
        assert_eq!(t.encode()[6], 0x0A);
        // +05:45 (Nepal) = 23 quarters.
        let t = Timestamp::decode([0x42, 0x30, 0x50, 0x41, 0x03, 0x95, 0x32]).unwrap();
        assert_eq!(t.to_rfc3339(), "2024-03-05T14:30:59+05:45");
    }

    #[test]
    fn refuses_bad_digits_and_dates() {
        assert!(Timestamp::decode([0x4A, 0x30, 0x50, 0x41, 0x03, 0x95, 0x40]).is_err());
        assert!(Timestamp::decode([0x42, 0x31, 0x50, 0x41, 0x03, 0x95, 0x40]).is_err()); // month 13
        assert!(Timestamp::decode([0x42, 0x20, 0x03, 0x41, 0x03, 0x95, 0x40]).is_err()); // Feb 30
        assert!(Timestamp::decode([0x42, 0x20, 0x92, 0x41, 0x03, 0x95, 0x40]).is_ok()); // 2024-02-29
        assert!(Timestamp::decode([0x32, 0x20, 0x92, 0x41, 0x03, 0x95, 0x40]).is_err());
        // 2023-02-29
    }
}
