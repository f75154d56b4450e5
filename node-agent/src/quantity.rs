//! Kubernetes quantities (`100m`, `128Mi`, `1.5`, `1e3`) as numbers, for cgroup limits and `resourceFieldRef`.

/// The value of a quantity in base units (cores, bytes), or `None` when it is not one.
pub fn parse(quantity: &str) -> Option<f64> {
    let q = quantity.trim();
    if q.is_empty() {
        return None;
    }
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exponent if exponent.starts_with(['e', 'E']) => 10f64.powi(exponent[1..].parse().ok()?),
        _ => return None,
    };
    Some(number * factor)
}

/// CPU in millicores, rounded up as the kubelet rounds (`0.1` and `100m` are 100).
pub fn cpu_millis(quantity: &str) -> Option<u64> {
    parse(quantity).map(|cores| (cores * 1000.0 - 1e-9).ceil().max(0.0) as u64)
}

/// Memory in bytes.
pub fn bytes(quantity: &str) -> Option<u64> {
    parse(quantity).map(|b| b.ceil().max(0.0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(cpu_millis("100m"), Some(100));
        assert_eq!(cpu_millis("0.5"), Some(500));
        assert_eq!(cpu_millis("1"), Some(1000));
        assert_eq!(cpu_millis("1500u"), Some(2));
        assert_eq!(bytes("128Mi"), Some(128 * 1024 * 1024));
        assert_eq!(bytes("1G"), Some(1_000_000_000));
        assert_eq!(bytes("1e3"), Some(1000));
        assert_eq!(bytes("64Mi"), Some(67_108_864));
        assert_eq!(parse("12x"), None);
        assert_eq!(parse(""), None);
    }
}
