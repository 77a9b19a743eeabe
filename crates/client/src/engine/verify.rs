//! Safety codes of the user's conversations, and the marks of those the user compared (module
//! [`safety`](super::safety) for the code and what it proves).
//!
//! A contact's code is that of the pair (us, the contact) in the contact's conversation; a
//! group's, one per other member. A mark (`engine.verified`) keeps the code the user marked;
//! the pair counts as verified while that equals the current code. Within one conversation the
//! code of a pair never changes (the id and the signature keys are the conversation's for
//! life), so a mark that differs means a mark made by other code: shown as not verified, never
//! carried over.

use crate::mls::MemberId;

use super::persist::Write;
use super::rows::{Kind, NS_VERIFIED, ThreadState, VerifiedMark, decode, mark_key};
use super::safety::SafetyCode;
use super::{Engine, EngineError};

impl Engine {
    /// The safety code of thread `name` with `member` (a label shown by [`Engine::members`]; for
    /// a contact `None`, the contact), and whether the user marked this code verified.
    pub fn safety_code(&self, name: &str, member: Option<&str>) -> Result<(SafetyCode, bool), EngineError> {
        let (t, other, code) = self.current_code(name, member)?;
        let verified = self.mark(t, &other)?.is_some_and(|m| m == code);
        Ok((code, verified))
    }

    /// Whether a code other than the current one is marked verified for `name` with `member`
    /// (as for [`Engine::safety_code`]): the page says "the safety code changed" rather than
    /// showing no mark at all.
    pub fn safety_code_changed(&self, name: &str, member: Option<&str>) -> Result<bool, EngineError> {
        let (t, other, code) = self.current_code(name, member)?;
        Ok(self.mark(t, &other)?.is_some_and(|m| m != code))
    }

    /// Marks the safety code of `name` with `member` (as for [`Engine::safety_code`]) verified,
    /// or takes the mark away. Refused ([`EngineError::NotCurrentCode`]) unless `code` (digits,
    /// whitespace ignored) is the current code: the user marks the code they compared.
    pub fn set_verified(
        &mut self,
        name: &str,
        member: Option<&str>,
        code: &str,
        verified: bool,
    ) -> Result<(), EngineError> {
        let (t, other, current) = self.current_code(name, member)?;
        if SafetyCode::parse(code).as_ref() != Some(&current) {
            return Err(EngineError::NotCurrentCode(name.into()));
        }
        let key = mark_key(t, other.as_bytes());
        self.writes.push(if verified {
            Write::put(key, &VerifiedMark(current))
        } else {
            Write::Del(NS_VERIFIED, key)
        });
        self.flush()
    }

    /// Whether the one other member of contact thread `t` is verified (false for a group, or a
    /// contact whose conversation is not set up).
    pub(super) fn contact_verified(&self, t: [u8; 16]) -> Result<bool, EngineError> {
        let Some(th) = self.threads.get(&t) else { return Ok(false) };
        if th.kind != Kind::Contact || th.state != ThreadState::Active {
            return Ok(false);
        }
        match self.current_code(&th.name, None) {
            Ok((t, other, code)) => Ok(self.mark(t, &other)?.is_some_and(|m| m == code)),
            Err(e) if e.is_fatal() => Err(e),
            Err(_) => Ok(false),
        }
    }

    /// The marks of thread `t` go: of `member`, or of every member (`None`: its conversation
    /// is gone). Saved with the next flush.
    pub(super) fn forget_marks(&mut self, t: [u8; 16], member: Option<&MemberId>) {
        match member {
            Some(m) => self.writes.push(Write::Del(NS_VERIFIED, mark_key(t, m.as_bytes()))),
            None => {
                for k in self.profile.keys(NS_VERIFIED).into_iter().filter(|k| k.starts_with(&t)) {
                    self.writes.push(Write::Del(NS_VERIFIED, k));
                }
            }
        }
    }

    /// Thread `name`'s id, the member whose code it is, and the current code.
    fn current_code(
        &self,
        name: &str,
        member: Option<&str>,
    ) -> Result<([u8; 16], MemberId, SafetyCode), EngineError> {
        let t = self.thread_by_name(name)?;
        let th = self.threads.get(&t).ok_or(EngineError::Corrupt("thread"))?;
        let conv = self.convs.get(&t).filter(|_| th.state == ThreadState::Active).ok_or_else(|| {
            EngineError::NotReady(name.into(), "its conversation is not set up (yet), or was left")
        })?;
        let own = conv.own_id();
        let other = match (member, th.kind) {
            (Some(m), _) => {
                self.member_by_label(t, m).ok_or_else(|| EngineError::UnknownMember(name.into(), m.into()))?
            }
            (None, Kind::Contact) => conv.members().into_iter().find(|m| *m != own).ok_or_else(|| {
                EngineError::NotReady(name.into(), "the contact is not in the conversation")
            })?,
            (None, Kind::Group) => return Err(EngineError::MemberNeeded(name.into())),
        };
        let code =
            SafetyCode::new(conv.id().as_bytes(), own.as_bytes(), other.as_bytes()).ok_or_else(|| {
                EngineError::NotReady(name.into(), "its conversation's id is longer than a safety code takes")
            })?;
        Ok((t, other, code))
    }

    /// The code marked verified for `member` of thread `t`, if any.
    fn mark(&self, t: [u8; 16], member: &MemberId) -> Result<Option<SafetyCode>, EngineError> {
        match self.profile.get(NS_VERIFIED, &mark_key(t, member.as_bytes()))? {
            Some(v) => Ok(Some(decode::<VerifiedMark>(&v)?.0)),
            None => Ok(None),
        }
    }
}
