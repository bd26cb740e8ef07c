//! UTC calendar time for log timestamps and monthly index names, without a date-time crate.

use live::clock::{Clock, SystemClock};

/// A UTC instant broken down to the millisecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub millisecond: u32,
}

impl UtcTime {
    pub fn now() -> UtcTime {
        UtcTime::from_unix_millis(SystemClock.now_ms())
    }

    pub fn from_unix_millis(millis: i64) -> UtcTime {
        let days = millis.div_euclid(86_400_000);
        let in_day = millis.rem_euclid(86_400_000);
        let (year, month, day) = civil_from_days(days);
        UtcTime {
            year,
            month,
            day,
            hour: (in_day / 3_600_000) as u32,
            minute: (in_day / 60_000 % 60) as u32,
            second: (in_day / 1000 % 60) as u32,
            millisecond: (in_day % 1000) as u32,
        }
    }

    /// RFC 3339 with milliseconds, e.g. `2025-01-31T23:59:59.123Z`.
    pub fn rfc3339(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second, self.millisecond
        )
    }

    /// `yyyy-MM`, the suffix of monthly indices.
    pub fn year_month(&self) -> String {
        format!("{:04}-{:02}", self.year, self.month)
    }
}

/// Year, month and day of a count of days since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants_are_broken_down_in_utc() {
        assert_eq!(UtcTime::from_unix_millis(0).rfc3339(), "1970-01-01T00:00:00.000Z");
        assert_eq!(UtcTime::from_unix_millis(951_782_400_000).rfc3339(), "2000-02-29T00:00:00.000Z");
        assert_eq!(UtcTime::from_unix_millis(1_735_689_599_999).rfc3339(), "2024-12-31T23:59:59.999Z");
        assert_eq!(UtcTime::from_unix_millis(1_735_689_600_000).year_month(), "2025-01");
        assert_eq!(UtcTime::from_unix_millis(-1).rfc3339(), "1969-12-31T23:59:59.999Z");
    }
}
