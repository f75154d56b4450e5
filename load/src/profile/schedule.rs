//! The arrival schedule of a profile: its stages as a piecewise-linear rate, the cumulative count of requests due by
//! any time, and its inverse (when request `k` is due), which the open-model scheduler walks.

use super::Profile;

/// One piece of the piecewise-linear arrival rate.
#[derive(Debug, Clone)]
struct Segment {
    stage: usize,
    start: f64,
    duration: f64,
    rate_from: f64,
    rate_to: f64,
    count_before: f64,
}

impl Segment {
    fn count(&self) -> f64 {
        (self.rate_from + self.rate_to) / 2.0 * self.duration
    }
}

/// The arrival schedule of a profile: rate r(t) is piecewise linear, and request k starts at the time t_k where the
/// cumulative count N(t) = ∫r reaches k. Start times are exact, so no drift accumulates over a long run.
#[derive(Debug, Clone)]
pub struct Schedule {
    segments: Vec<Segment>,
    total: f64,
    duration: f64,
}

impl Schedule {
    pub fn new(profile: &Profile) -> Schedule {
        let mut segments = Vec::new();
        let mut rate = profile.start_rate;
        let mut t = 0.0;
        let mut count = 0.0;
        for (i, s) in profile.stages.iter().enumerate() {
            let d = s.duration.as_secs_f64();
            let from = if s.ramp { rate } else { s.rate };
            let seg = Segment {
                stage: i,
                start: t,
                duration: d,
                rate_from: from,
                rate_to: s.rate,
                count_before: count,
            };
            count += seg.count();
            t += d;
            rate = s.rate;
            segments.push(seg);
        }
        Schedule {
            segments,
            total: count,
            duration: t,
        }
    }

    /// Expected requests over the whole schedule.
    pub fn total_count(&self) -> f64 {
        self.total
    }

    /// Length of the schedule in seconds.
    pub fn duration_secs(&self) -> f64 {
        self.duration
    }

    fn segment_at(&self, t: f64) -> Option<&Segment> {
        self.segments
            .iter()
            .find(|s| t >= s.start && t < s.start + s.duration)
    }

    /// Arrival rate at `t` seconds.
    pub fn rate_at(&self, t: f64) -> f64 {
        match self.segment_at(t) {
            Some(s) => s.rate_from + (s.rate_to - s.rate_from) * (t - s.start) / s.duration,
            None => 0.0,
        }
    }

    /// Index of the stage running at `t` seconds.
    pub fn stage_at(&self, t: f64) -> Option<usize> {
        self.segment_at(t).map(|s| s.stage)
    }

    /// N(t): requests due in [0, t).
    pub fn cumulative(&self, t: f64) -> f64 {
        if t <= 0.0 {
            return 0.0;
        }
        if t >= self.duration {
            return self.total;
        }
        let s = self.segment_at(t).expect("t is inside the schedule");
        let x = t - s.start;
        let slope = (s.rate_to - s.rate_from) / s.duration;
        s.count_before + s.rate_from * x + slope * x * x / 2.0
    }

    /// Start time in seconds of request `k` (0-based): the t where N(t) = k. `None` past the end.
    pub fn time_of(&self, k: f64) -> Option<f64> {
        if k >= self.total {
            return None;
        }
        // Segments are few (a profile has tens of stages), so a linear scan is fine.
        let s = self
            .segments
            .iter()
            .rev()
            .find(|s| s.count_before <= k && s.count() > 0.0)?;
        let m = k - s.count_before;
        let a = (s.rate_to - s.rate_from) / s.duration / 2.0;
        let b = s.rate_from;
        let x = if a.abs() < 1e-12 {
            m / b
        } else {
            let disc = (b * b + 4.0 * a * m).max(0.0);
            (-b + disc.sqrt()) / (2.0 * a)
        };
        Some(s.start + x.clamp(0.0, s.duration))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::RequestSpec;
    use std::time::Duration;

    #[test]
    fn schedule_constant_rate() {
        let p = Profile::constant(
            100.0,
            Duration::from_secs(2),
            RequestSpec::new("GET", "/", None),
        );
        let s = Schedule::new(&p);
        assert_eq!(s.total_count(), 200.0);
        assert!((s.time_of(50.0).unwrap() - 0.5).abs() < 1e-9);
        assert!(s.time_of(200.0).is_none());
    }

    #[test]
    fn schedule_ramp_inverts_cumulative() {
        let p = Profile::builtin("demo").unwrap();
        let s = Schedule::new(&p);
        for k in [
            0.0,
            10.0,
            49.0,
            50.0,
            51.0,
            200.0,
            1000.0,
            1500.0,
            s.total_count() - 1.0,
        ] {
            let t = s.time_of(k).unwrap();
            assert!((s.cumulative(t) - k).abs() < 1e-6, "k={k} t={t}");
        }
        // ramp from 5 to 50 over 5 s gives 137.5 requests
        assert!((s.cumulative(15.0) - s.cumulative(10.0) - 137.5).abs() < 1e-9);
    }
}
