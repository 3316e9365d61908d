//! The numbers on the wire: command codes of requests and status codes of responses.

/// A request's command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Invoke,
    RegisterFunction,
    DeployFunction,
    List,
    Info,
    Rollback,
    Delete,
    SetEnv,
    UnsetEnv,
    ListEnv,
    GetLogs,
    GetMetrics,
    Status,
}

const COMMANDS: &[(u8, Command, &str)] = &[
    (0x01, Command::Invoke, "INVOKE"),
    (0x02, Command::RegisterFunction, "REGISTER_FUNCTION"),
    (0x03, Command::DeployFunction, "DEPLOY_FUNCTION"),
    (0x04, Command::List, "LIST"),
    (0x05, Command::Info, "INFO"),
    (0x06, Command::Rollback, "ROLLBACK"),
    (0x07, Command::Delete, "DELETE"),
    (0x08, Command::SetEnv, "SET_ENV"),
    (0x09, Command::UnsetEnv, "UNSET_ENV"),
    (0x0a, Command::ListEnv, "LIST_ENV"),
    (0x0b, Command::GetLogs, "GET_LOGS"),
    (0x0c, Command::GetMetrics, "GET_METRICS"),
    (0x0d, Command::Status, "STATUS"),
];

impl Command {
    pub fn from_code(code: u8) -> Option<Command> {
        COMMANDS
            .iter()
            .find(|(c, _, _)| *c == code)
            .map(|(_, command, _)| *command)
    }

    pub fn code(self) -> u8 {
        COMMANDS
            .iter()
            .find(|(_, c, _)| *c == self)
            .map(|(code, _, _)| *code)
            .unwrap_or(0)
    }

    pub fn name(self) -> &'static str {
        COMMANDS
            .iter()
            .find(|(_, c, _)| *c == self)
            .map(|(_, _, name)| *name)
            .unwrap_or("?")
    }
}

/// A response's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Error,
    NotFound,
    BadRequest,
    Timeout,
    Busy,
    Unavailable,
}

const STATUSES: &[(u8, Status, &str)] = &[
    (0x00, Status::Ok, "OK"),
    (0x01, Status::Error, "ERROR"),
    (0x02, Status::NotFound, "NOT_FOUND"),
    (0x03, Status::BadRequest, "BAD_REQUEST"),
    (0x04, Status::Timeout, "TIMEOUT"),
    (0x05, Status::Busy, "BUSY"),
    (0x06, Status::Unavailable, "UNAVAILABLE"),
];

impl Status {
    pub fn from_code(code: u8) -> Option<Status> {
        STATUSES
            .iter()
            .find(|(c, _, _)| *c == code)
            .map(|(_, status, _)| *status)
    }

    pub fn code(self) -> u8 {
        STATUSES
            .iter()
            .find(|(_, s, _)| *s == self)
            .map(|(code, _, _)| *code)
            .unwrap_or(1)
    }

    pub fn name(self) -> &'static str {
        STATUSES
            .iter()
            .find(|(_, s, _)| *s == self)
            .map(|(_, _, name)| *name)
            .unwrap_or("?")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for (code, command, name) in COMMANDS {
            assert_eq!(Command::from_code(*code), Some(*command));
            assert_eq!((command.code(), command.name()), (*code, *name));
        }
        for (code, status, _) in STATUSES {
            assert_eq!(Status::from_code(*code), Some(*status));
            assert_eq!(status.code(), *code);
        }
        assert_eq!(Command::from_code(0), None);
        assert_eq!(Command::from_code(0xff), None);
    }
}
