//! Prometheus's `histogram_quantile`, for the direct source: the same interpolation Prometheus does, so a latency
//! trigger reads the same figure from scraped pods as from a Prometheus query.

pub(crate) fn parse_le(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        _ => text.parse::<f64>().ok(),
    }
}

/// Prometheus's `histogram_quantile` on cumulative buckets `(upper bound, count)` sorted by bound: linear interpolation
/// inside the bucket holding the rank; the highest finite bound when the rank falls in `+Inf`. None with no observations.
pub fn histogram_quantile(quantile: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    if buckets.len() < 2 || !buckets[buckets.len() - 1].0.is_infinite() {
        return None;
    }
    // Counts summed from separately reset series can dip; cumulative buckets never decrease.
    let mut cumulative = Vec::with_capacity(buckets.len());
    let mut running: f64 = 0.0;
    for (bound, count) in buckets {
        running = running.max(*count);
        cumulative.push((*bound, running));
    }
    let observations = cumulative[cumulative.len() - 1].1;
    if observations <= 0.0 {
        return None;
    }
    let mut rank = quantile * observations;
    let index = cumulative
        .iter()
        .position(|(_, count)| *count >= rank)
        .unwrap_or(cumulative.len() - 1);
    if index == cumulative.len() - 1 {
        return Some(cumulative[cumulative.len() - 2].0);
    }
    let (start, below) = if index == 0 {
        (0.0_f64.min(cumulative[0].0), 0.0)
    } else {
        cumulative[index - 1]
    };
    let (end, count) = cumulative[index];
    let in_bucket = count - below;
    rank -= below;
    if in_bucket <= 0.0 {
        return Some(end);
    }
    Some(start + (end - start) * (rank / in_bucket))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_matches_prometheus_interpolation() {
        let buckets = [
            (0.1, 10.0),
            (0.5, 60.0),
            (1.0, 100.0),
            (f64::INFINITY, 100.0),
        ];
        // rank 50 is in (0.1, 0.5]: 0.1 + 0.4 * 40/50.
        assert!((histogram_quantile(0.5, &buckets).unwrap() - 0.42).abs() < 1e-12);
        assert!((histogram_quantile(0.05, &buckets).unwrap() - 0.05).abs() < 1e-12);
        let tail = [(0.1, 0.0), (1.0, 1.0), (f64::INFINITY, 10.0)];
        assert_eq!(histogram_quantile(0.99, &tail), Some(1.0));
        assert_eq!(
            histogram_quantile(0.5, &[(0.1, 0.0), (f64::INFINITY, 0.0)]),
            None
        );
        assert_eq!(histogram_quantile(0.5, &[(0.1, 1.0)]), None);
    }
}
