//! Host specs as users type them: `:9000` means port 9000 on this machine.

/// Why a host spec is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostSpecError {
    /// The spec was empty.
    #[error("empty host")]
    Empty,
    /// No port, or a port that is not a number from 1 to 65535.
    #[error("host {0:?} needs a port from 1 to 65535, as in \":9000\" or \"host:9000\"")]
    Port(String),
}

/// Turns `:9000` into `127.0.0.1:9000` and checks that `host:port` has a valid port.
pub fn parse_host_spec(spec: &str) -> Result<String, HostSpecError> {
    let spec = spec.trim();
    if spec.is_empty() {
        return Err(HostSpecError::Empty);
    }
    let (host, port) = spec
        .rsplit_once(':')
        .ok_or_else(|| HostSpecError::Port(spec.to_owned()))?;
    match port.parse::<u16>() {
        Ok(p) if p != 0 => {}
        _ => return Err(HostSpecError::Port(spec.to_owned())),
    }
    if host.is_empty() {
        Ok(format!("127.0.0.1:{port}"))
    } else {
        Ok(spec.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_port_means_loopback() {
        assert_eq!(parse_host_spec(":9000").as_deref(), Ok("127.0.0.1:9000"));
        assert_eq!(parse_host_spec("box7:9001").as_deref(), Ok("box7:9001"));
        assert_eq!(parse_host_spec("[::1]:9001").as_deref(), Ok("[::1]:9001"));
    }

    #[test]
    fn rejects_missing_or_bad_ports() {
        assert!(parse_host_spec("box7").is_err());
        assert!(parse_host_spec(":0").is_err());
        assert!(parse_host_spec(":99999").is_err());
        assert_eq!(parse_host_spec(" "), Err(HostSpecError::Empty));
    }
}
