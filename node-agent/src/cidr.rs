//! IPv4 CIDR blocks: the cluster's pod, Service and node-link networks, and the addresses taken from them.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 block such as `10.244.0.0/16`, normalized to its network address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: Ipv4Addr,
    prefix: u8,
}

#[derive(Debug, thiserror::Error)]
#[error("{given:?} is not an IPv4 CIDR block like 10.244.0.0/16 ({why})")]
pub struct InvalidCidr {
    pub given: String,
    pub why: &'static str,
}

impl Cidr {
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Cidr> {
        (prefix <= 32).then(|| Cidr {
            network: Ipv4Addr::from(u32::from(addr) & mask(prefix)),
            prefix,
        })
    }

    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The number of addresses in the block.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    /// The `n`th address of the block (0 is the network address); `None` past its end.
    pub fn nth(&self, n: u64) -> Option<Ipv4Addr> {
        (n < self.size()).then(|| Ipv4Addr::from(u32::from(self.network) + n as u32))
    }

    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & mask(self.prefix) == u32::from(self.network)
    }

    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.contains(other.network) || other.contains(self.network)
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

impl FromStr for Cidr {
    type Err = InvalidCidr;

    fn from_str(s: &str) -> Result<Cidr, InvalidCidr> {
        let invalid = |why| InvalidCidr {
            given: s.to_string(),
            why,
        };
        let (addr, prefix) = s.split_once('/').ok_or_else(|| invalid("no /prefix"))?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| invalid("not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| invalid("the prefix is not a number"))?;
        let cidr = Cidr::new(addr, prefix).ok_or_else(|| invalid("the prefix is over 32"))?;
        if cidr.network != addr {
            return Err(invalid("host bits are set"));
        }
        Ok(cidr)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_parse_and_give_their_addresses() {
        let pods: Cidr = "10.244.0.0/24".parse().unwrap();
        assert_eq!(pods.nth(1), Some(Ipv4Addr::new(10, 244, 0, 1)));
        assert_eq!(pods.nth(256), None);
        assert!(pods.contains(Ipv4Addr::new(10, 244, 0, 200)));
        assert!(!pods.contains(Ipv4Addr::new(10, 244, 1, 0)));
        let cluster: Cidr = "10.244.0.0/16".parse().unwrap();
        assert!(cluster.overlaps(&pods) && pods.overlaps(&cluster));
        assert!(!cluster.overlaps(&"10.96.0.0/16".parse().unwrap()));
        assert_eq!(cluster.to_string(), "10.244.0.0/16");
        for bad in [
            "10.244.0.0",
            "10.244.0.1/16",
            "10.244.0.0/33",
            "x/8",
            "::1/128",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }
}
