//! Errors returned by hypercalls: negated `errno` values (`public/errno.h`).

use core::fmt;

/// A failed hypercall's error number (positive, as in `public/errno.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XenError(pub i64);

impl XenError {
    pub const EPERM: XenError = XenError(1);
    pub const ENOENT: XenError = XenError(2);
    pub const EAGAIN: XenError = XenError(11);
    pub const ENOMEM: XenError = XenError(12);
    pub const EFAULT: XenError = XenError(14);
    pub const EBUSY: XenError = XenError(16);
    pub const EINVAL: XenError = XenError(22);
    pub const ENOSYS: XenError = XenError(38);

    /// Turns a hypercall's return value into a result: negative is an error.
    pub fn check(ret: i64) -> Result<u64, XenError> {
        if ret < 0 {
            Err(XenError(-ret))
        } else {
            Ok(ret as u64)
        }
    }

    fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            1 => "EPERM",
            2 => "ENOENT",
            3 => "ESRCH",
            11 => "EAGAIN",
            12 => "ENOMEM",
            13 => "EACCES",
            14 => "EFAULT",
            16 => "EBUSY",
            17 => "EEXIST",
            22 => "EINVAL",
            28 => "ENOSPC",
            38 => "ENOSYS",
            95 => "EOPNOTSUPP",
            _ => return None,
        })
    }
}

impl fmt::Display for XenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} ({})", self.0),
            None => write!(f, "Xen error {}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_returns_are_errors() {
        assert_eq!(XenError::check(0), Ok(0));
        assert_eq!(XenError::check(7), Ok(7));
        assert_eq!(XenError::check(-22), Err(XenError::EINVAL));
        assert_eq!(XenError::EINVAL.to_string(), "EINVAL (22)");
        assert_eq!(XenError(4242).to_string(), "Xen error 4242");
    }
}
