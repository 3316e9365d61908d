//! What is counted per function version over some span of time (a minute, a day, since
//! start): invocations, failures by kind, cold starts, the duration histogram and the
//! time spent waiting for a worker. The same columns are stored in `metrics.db`.

use crate::observe::Outcome;

use super::histogram::{Histogram, BUCKETS};

/// Why an invocation counts as failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    FunctionError,
    Timeout,
    Crash,
    Throttled,
    StartFailed,
    /// The function itself answered with a status of 500 or more.
    Status5xx,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 6] = [
        ErrorKind::FunctionError,
        ErrorKind::Timeout,
        ErrorKind::Crash,
        ErrorKind::Throttled,
        ErrorKind::StartFailed,
        ErrorKind::Status5xx,
    ];

    /// The failure an outcome and status stand for, None for a success.
    pub fn of(outcome: Outcome, status: u16) -> Option<ErrorKind> {
        match outcome {
            Outcome::Ok if status >= 500 => Some(ErrorKind::Status5xx),
            Outcome::Ok => None,
            Outcome::FunctionError => Some(ErrorKind::FunctionError),
            Outcome::Timeout => Some(ErrorKind::Timeout),
            Outcome::Crash => Some(ErrorKind::Crash),
            Outcome::Throttled => Some(ErrorKind::Throttled),
            Outcome::StartFailed => Some(ErrorKind::StartFailed),
        }
    }

    /// The name used in JSON, as a Prometheus `outcome` and as a column of metrics.db.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::FunctionError => "function_error",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Crash => "crash",
            ErrorKind::Throttled => "throttled",
            ErrorKind::StartFailed => "start_failed",
            ErrorKind::Status5xx => "status_5xx",
        }
    }
}

/// One finished invocation, as the metrics see it.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub error: Option<ErrorKind>,
    pub cold: bool,
    pub duration_us: u64,
    pub queue_wait_us: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Aggregate {
    pub invocations: u64,
    /// Failures, indexed like [`ErrorKind::ALL`].
    pub errors: [u64; ErrorKind::ALL.len()],
    pub cold_starts: u64,
    pub duration: Histogram,
    pub queue_wait_us_sum: u64,
    pub queue_wait_us_max: u64,
}

/// The columns of an aggregate in metrics.db, in the order of [`Aggregate::to_columns`].
/// Columns ending in `_max` combine by maximum, every other one by sum.
pub const COLUMNS: [&str; 12 + BUCKETS] = [
    "invocations",
    "function_error",
    "timeout",
    "crash",
    "throttled",
    "start_failed",
    "status_5xx",
    "cold_starts",
    "duration_us_sum",
    "duration_us_max",
    "queue_wait_us_sum",
    "queue_wait_us_max",
    "le_1ms",
    "le_2_5ms",
    "le_5ms",
    "le_10ms",
    "le_25ms",
    "le_50ms",
    "le_100ms",
    "le_250ms",
    "le_500ms",
    "le_1000ms",
    "le_2500ms",
    "le_5000ms",
    "le_10000ms",
    "le_30000ms",
    "le_inf",
];

impl Aggregate {
    pub fn record(&mut self, sample: &Sample) {
        self.invocations += 1;
        if let Some(kind) = sample.error {
            self.errors[kind as usize] += 1;
        }
        self.cold_starts += u64::from(sample.cold);
        self.duration.observe(sample.duration_us);
        self.queue_wait_us_sum += sample.queue_wait_us;
        self.queue_wait_us_max = self.queue_wait_us_max.max(sample.queue_wait_us);
    }

    pub fn add(&mut self, other: &Aggregate) {
        self.invocations += other.invocations;
        for (mine, theirs) in self.errors.iter_mut().zip(other.errors) {
            *mine += theirs;
        }
        self.cold_starts += other.cold_starts;
        self.duration.add(&other.duration);
        self.queue_wait_us_sum += other.queue_wait_us_sum;
        self.queue_wait_us_max = self.queue_wait_us_max.max(other.queue_wait_us_max);
    }

    pub fn error_count(&self, kind: ErrorKind) -> u64 {
        self.errors[kind as usize]
    }

    /// Failures of every kind.
    pub fn failed(&self) -> u64 {
        self.errors.iter().sum()
    }

    /// Values in the order of [`COLUMNS`].
    pub fn to_columns(&self) -> [i64; COLUMNS.len()] {
        let mut values = [0u64; COLUMNS.len()];
        values[0] = self.invocations;
        values[1..7].copy_from_slice(&self.errors);
        values[7] = self.cold_starts;
        values[8] = self.duration.sum_us;
        values[9] = self.duration.max_us;
        values[10] = self.queue_wait_us_sum;
        values[11] = self.queue_wait_us_max;
        values[12..].copy_from_slice(&self.duration.counts);
        values.map(|v| i64::try_from(v).unwrap_or(i64::MAX))
    }

    /// The inverse of [`Aggregate::to_columns`]; negative values read as zero.
    pub fn from_columns(values: &[i64; COLUMNS.len()]) -> Aggregate {
        let v = values.map(|v| u64::try_from(v).unwrap_or(0));
        let mut aggregate = Aggregate {
            invocations: v[0],
            cold_starts: v[7],
            queue_wait_us_sum: v[10],
            queue_wait_us_max: v[11],
            ..Aggregate::default()
        };
        aggregate.errors.copy_from_slice(&v[1..7]);
        aggregate.duration.sum_us = v[8];
        aggregate.duration.max_us = v[9];
        aggregate.duration.counts.copy_from_slice(&v[12..]);
        aggregate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(error: Option<ErrorKind>, cold: bool, ms: u64) -> Sample {
        Sample {
            error,
            cold,
            duration_us: ms * 1000,
            queue_wait_us: ms * 100,
        }
    }

    #[test]
    fn outcomes_and_statuses_map_to_error_kinds() {
        assert_eq!(ErrorKind::of(Outcome::Ok, 200), None);
        assert_eq!(ErrorKind::of(Outcome::Ok, 404), None);
        assert_eq!(ErrorKind::of(Outcome::Ok, 503), Some(ErrorKind::Status5xx));
        assert_eq!(
            ErrorKind::of(Outcome::Timeout, 504),
            Some(ErrorKind::Timeout)
        );
        for (at, kind) in ErrorKind::ALL.iter().enumerate() {
            assert_eq!(*kind as usize, at);
            assert_eq!(COLUMNS[1 + at], kind.name());
        }
    }

    #[test]
    fn aggregates_count_and_survive_the_column_round_trip() {
        let mut a = Aggregate::default();
        a.record(&sample(None, true, 3));
        a.record(&sample(Some(ErrorKind::Timeout), false, 40));
        a.record(&sample(Some(ErrorKind::Status5xx), false, 2));
        assert_eq!((a.invocations, a.failed(), a.cold_starts), (3, 2, 1));
        assert_eq!(a.error_count(ErrorKind::Timeout), 1);
        assert_eq!((a.queue_wait_us_sum, a.queue_wait_us_max), (4_500, 4_000));
        assert_eq!(a.duration.count(), 3);
        assert_eq!(Aggregate::from_columns(&a.to_columns()), a);

        let mut doubled = a;
        doubled.add(&a);
        assert_eq!(doubled.invocations, 6);
        assert_eq!(doubled.duration.max_us, 40_000);
        assert_eq!(doubled.queue_wait_us_max, 4_000);
        assert_eq!(doubled.error_count(ErrorKind::Status5xx), 2);
    }
}
