//! FTPS on the control connection (RFC 4217, with RFC 2228's AUTH, PBSZ, PROT and CCC).
//!
//! The session decides; the engine does the handshakes. `AUTH TLS` (or `SSL`, `TLS-C`,
//! `TLS-P`: old drafts' names for the same thing) is answered 234 and followed by
//! [`Action::StartTls`]: the engine writes the 234 in clear, runs the handshake, and answers
//! with [`Session::tls_started`] (or closes the connection when it fails). Lines the client
//! sent after `AUTH` in the same plaintext read are dropped, so nothing injected before the
//! handshake is read as if it came through TLS (the STARTTLS command-injection attack).
//!
//! Rules, as vsftpd and proftpd apply them:
//! - `PBSZ` before `AUTH`: 503; any size is answered "PBSZ=0" (TLS needs no buffer size).
//! - `PROT` before `PBSZ`: 503; `C` and `P` are taken, `S` and `E` 536.
//! - `CCC` (back to clear text): 534, as a firewall that sees clear text after TLS is worth
//!   less than TLS.
//! - A second `AUTH` inside TLS: 503.
//! - Control policy [`TlsPolicy::Required`]: `USER` on a clear connection is 530 before any
//!   password is asked for, unless the name is anonymous and [`SessionConfig::tls_anonymous_exempt`].
//! - Data policy [`TlsPolicy::Required`]: a transfer with `PROT C` is 521 (the same exemption).
//! - Per user ([`User`]'s `tls` and `tls_data`, from the authenticator): a user whose control
//!   policy is `Required` is refused on a clear connection with 530 in answer to PASS (the
//!   user is known only once the authenticator answered; 530 is the reply RFC 959 §5.4 allows
//!   for PASS, and clients read it as a failed login; 534, RFC 2228's policy refusal, is not a
//!   PASS reply). A user's data policy replaces the server's: `Required` means 521 without
//!   PROT P, `Optional` or `Off` lift the server's requirement for that user.
//! - `REIN` inside TLS keeps TLS: RFC 4217 §11 leaves the control connection's protection
//!   in place across REIN (clearing it would be CCC, refused above); it does reset `PBSZ` and
//!   `PROT`, which belong to the login, except under implicit FTPS, where `PROT P` is implied.
//! - Implicit FTPS ([`SessionConfig::implicit_tls`]): the engine has done the handshake before
//!   the greeting; `PBSZ 0` and `PROT P` are implied.

use std::time::Instant;

use super::{Action, Session, SessionConfig, Waiting};
use crate::proto::command::{Command, ProtLevel};
use crate::proto::reply::code;
pub use crate::types::TlsPolicy;
use crate::types::User;

/// The TLS state of one control connection.
#[derive(Debug, Default)]
pub(super) struct TlsState {
    /// The control connection runs inside TLS.
    pub(super) active: bool,
    /// PBSZ was given (or implied).
    pbsz: bool,
    /// PROT P: data connections are TLS.
    pub(super) protect: bool,
    /// Drop the lines buffered after AUTH: they arrived in clear.
    pub(super) discard_buffered: bool,
}

impl TlsState {
    pub(super) fn new(config: &SessionConfig) -> Self {
        let implicit = config.implicit_tls;
        TlsState { active: implicit, pbsz: implicit, protect: implicit, discard_buffered: false }
    }
}

/// Names RFC 1635 gives anonymous logins.
fn is_anonymous(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"anonymous") || name.eq_ignore_ascii_case(b"ftp")
}

impl Session {
    /// Whether the control connection runs inside TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.active
    }

    /// Whether data connections are TLS (PROT P).
    pub fn protects_data(&self) -> bool {
        self.tls.protect
    }

    /// The handshake after [`Action::StartTls`] finished: the control connection is now TLS.
    pub fn tls_started(&mut self, now: Instant) {
        if !matches!(self.waiting, Waiting::Tls) {
            return;
        }
        self.waiting = Waiting::Nothing;
        self.tls.active = true;
        self.idle_deadline = now + self.config.idle_timeout;
        self.drive(now);
    }

    /// Handles AUTH, PBSZ, PROT and CCC; `false` for any other command.
    pub(super) fn tls_command(&mut self, cmd: &Command<'_>) -> bool {
        let configured = self.config.tls != TlsPolicy::Off;
        match cmd {
            Command::Auth(_) | Command::Pbsz(_) | Command::Prot(_) | Command::Ccc if !configured => {
                self.reply_static(code::NOT_IMPLEMENTED, "TLS not configured.");
            }
            Command::Auth(_) if self.tls.active => {
                self.reply_static(code::BAD_SEQUENCE, "Already using TLS.");
            }
            Command::Auth(mech) => {
                let known = [&b"TLS"[..], b"SSL", b"TLS-C", b"TLS-P"];
                if !known.iter().any(|m| mech.eq_ignore_ascii_case(m)) {
                    self.reply_static(code::PARAMETER_NOT_IMPLEMENTED, "AUTH TLS or AUTH SSL only.");
                    return true;
                }
                // RFC 2228 §3: a new security exchange starts a new login.
                self.login = super::Login::Anonymous;
                self.reset_session_state();
                self.reply_static(code::AUTH_OK, "Proceed with negotiation.");
                self.tls.discard_buffered = true;
                self.waiting = Waiting::Tls;
                self.actions.push_back(Action::StartTls);
            }
            Command::Pbsz(_) if !self.tls.active => {
                self.reply_static(code::BAD_SEQUENCE, "PBSZ needs AUTH TLS first.");
            }
            Command::Pbsz(_) => {
                self.tls.pbsz = true;
                self.reply_static(code::OK, "PBSZ=0");
            }
            Command::Prot(_) if !self.tls.pbsz => {
                self.reply_static(code::BAD_SEQUENCE, "PROT needs PBSZ first.");
            }
            Command::Prot(ProtLevel::Clear) => {
                self.tls.protect = false;
                self.reply_static(code::OK, "Protection set to Clear.");
            }
            Command::Prot(ProtLevel::Private) => {
                self.tls.protect = true;
                self.reply_static(code::OK, "Protection set to Private.");
            }
            Command::Prot(_) => {
                self.reply_static(code::PROT_NOT_SUPPORTED, "PROT S and E are not supported; use C or P.");
            }
            Command::Ccc => self.reply_static(code::POLICY_DENIED, "CCC refused: the connection stays TLS."),
            Command::User(name) if self.refuses_clear_login(name) => {
                self.reply_static(code::NOT_LOGGED_IN, "TLS required: use AUTH TLS first.");
            }
            _ => return false,
        }
        true
    }

    fn refuses_clear_login(&self, name: &[u8]) -> bool {
        self.config.tls == TlsPolicy::Required
            && !self.tls.active
            && !(self.config.tls_anonymous_exempt && is_anonymous(name))
    }

    /// 521 for a transfer command over a clear data connection the policy forbids.
    pub(super) fn refuses_clear_data(&mut self, cmd: &Command<'_>) -> bool {
        let transfer = matches!(
            cmd,
            Command::Retr(_)
                | Command::Stor(_)
                | Command::Appe(_)
                | Command::Stou(_)
                | Command::List(_)
                | Command::Nlst(_)
                | Command::Mlsd(_)
        );
        if !transfer || self.tls.protect {
            return false;
        }
        let user = self.user();
        let required = match user.and_then(|u| u.tls_data) {
            // The user's own policy is explicit: no anonymous exemption.
            Some(policy) => policy == TlsPolicy::Required,
            None => {
                self.config.tls_data == TlsPolicy::Required
                    && !(self.config.tls_anonymous_exempt
                        && !self.tls.active
                        && user.is_some_and(|u| is_anonymous(u.name.as_bytes())))
            }
        };
        if required {
            self.reply_static(
                code::DATA_PROTECTION_REQUIRED,
                "Data connections must be protected: use PROT P.",
            );
        }
        required
    }

    /// Whether the user the authenticator named must log in over TLS and did not: their
    /// `tls` policy, known only after the lookup (the server's is applied at USER).
    pub(super) fn refuses_user_on_clear(&self, user: &User) -> bool {
        user.tls == Some(TlsPolicy::Required) && !self.tls.active
    }

    /// REIN keeps the control connection's TLS and resets what belongs to the login.
    pub(super) fn tls_rein(&mut self) {
        if !self.config.implicit_tls {
            self.tls.pbsz = false;
            self.tls.protect = false;
        }
    }

    /// The FEAT lines for TLS, empty when TLS is off.
    pub(super) fn tls_features(&self) -> (&'static str, &'static str) {
        if self.config.tls == TlsPolicy::Off {
            ("", "")
        } else {
            ("AUTH TLS\n", "PBSZ\nPROT\n")
        }
    }
}
