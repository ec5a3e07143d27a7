//! Directory listings and file facts: `ls -l` lines for LIST (the de-facto format every client
//! parses), bare names for NLST (RFC 959 §4.1.3), MLSx facts (RFC 3659 §7), and the MDTM time
//! format (RFC 3659 §2.3). Pure formatting; `now` is passed in, so output is reproducible.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::types::{FileKind, Metadata};

const MONTHS: [&[u8; 3]; 12] =
    [b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec"];

/// A UTC calendar time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime {
    /// Year, e.g. 2026.
    pub year: i64,
    /// Month 1..=12.
    pub month: u32,
    /// Day 1..=31.
    pub day: u32,
    /// Hour, minute, second.
    pub hour: u32,
    /// Minute.
    pub minute: u32,
    /// Second.
    pub second: u32,
}

impl DateTime {
    /// The UTC calendar time of `t` (times before 1970 count backwards).
    pub fn from_system_time(t: SystemTime) -> Self {
        let secs = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2),
            Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX / 2),
        };
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400) as u32;
        let (year, month, day) = civil_from_days(days);
        DateTime { year, month, day, hour: rem / 3600, minute: rem / 60 % 60, second: rem % 60 }
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Appends `YYYYMMDDHHMMSS` (MDTM, MLSx `modify`).
pub fn write_timeval(t: SystemTime, out: &mut Vec<u8>) {
    let d = DateTime::from_system_time(t);
    let year = d.year.clamp(0, 9999);
    let s = format!("{year:04}{:02}{:02}{:02}{:02}{:02}", d.month, d.day, d.hour, d.minute, d.second);
    out.extend_from_slice(s.as_bytes());
}

fn write_mode(meta: &Metadata, out: &mut Vec<u8>) {
    out.push(match meta.kind {
        FileKind::Dir => b'd',
        FileKind::Symlink => b'l',
        FileKind::File => b'-',
        FileKind::Other => b'?',
    });
    const BITS: [(u32, u8); 9] = [
        (0o400, b'r'),
        (0o200, b'w'),
        (0o100, b'x'),
        (0o040, b'r'),
        (0o020, b'w'),
        (0o010, b'x'),
        (0o004, b'r'),
        (0o002, b'w'),
        (0o001, b'x'),
    ];
    for (bit, c) in BITS {
        out.push(if meta.mode & bit != 0 { c } else { b'-' });
    }
}

/// Appends one `ls -l` line with CRLF. Times within six months of `now` show the time of day,
/// older or future ones the year, as `ls` does. A symlink shows its target after ` -> `, as
/// `ls -l` and vsftpd do: lftp and wget find links (and what to fetch through them) that way.
pub fn write_list_line(name: &[u8], meta: &Metadata, now: SystemTime, out: &mut Vec<u8>) {
    write_mode(meta, out);
    let modified = meta.modified.unwrap_or(UNIX_EPOCH);
    let d = DateTime::from_system_time(modified);
    const HALF_YEAR: Duration = Duration::from_secs(182 * 86_400);
    let recent = modified <= now + Duration::from_secs(3600)
        && now.duration_since(modified).map_or(true, |age| age < HALF_YEAR);
    let month = MONTHS.get(d.month.saturating_sub(1) as usize).copied().unwrap_or(b"Jan");
    let when = if recent { format!("{:02}:{:02}", d.hour, d.minute) } else { format!("{:>5}", d.year) };
    let head = format!(
        " {:>3} ftp      ftp      {:>13} {} {:>2} {when} ",
        meta.nlink,
        meta.len,
        std::str::from_utf8(month).unwrap_or("Jan"),
        d.day
    );
    out.extend_from_slice(head.as_bytes());
    write_name(name, out);
    if let Some(target) = &meta.link_target {
        out.extend_from_slice(b" -> ");
        write_name(target, out);
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends a name for NLST with CRLF.
pub fn write_nlst_line(name: &[u8], out: &mut Vec<u8>) {
    write_name(name, out);
    out.extend_from_slice(b"\r\n");
}

/// A name with CR and LF replaced, so one entry is always one line.
fn write_name(name: &[u8], out: &mut Vec<u8>) {
    out.extend(name.iter().map(|&b| if b == b'\r' || b == b'\n' { b'?' } else { b }));
}

/// The MLSx facts this server knows (RFC 3659 §7.5), as a set a client picks from with
/// `OPTS MLST` (§7.9). Every fact is selected until a client says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts(u16);

/// The fact names, in the order they are written; bit `i` of [`Facts`] is `FACT_NAMES[i]`.
const FACT_NAMES: [&str; 8] =
    ["type", "size", "modify", "perm", "unique", "UNIX.mode", "UNIX.owner", "UNIX.group"];

impl Facts {
    /// Every fact.
    pub const ALL: Facts = Facts((1 << FACT_NAMES.len()) - 1);
    /// No optional fact (`OPTS MLST` with an empty list).
    pub const NONE: Facts = Facts(0);

    fn has(self, i: usize) -> bool {
        self.0 & (1 << i) != 0
    }

    /// Parses the list of `OPTS MLST type;size;`: facts this server does not know are
    /// ignored, as §7.9 says.
    pub fn parse(list: &[u8]) -> Facts {
        let mut set = 0;
        for fact in list.split(|&b| b == b';') {
            if let Some(i) = FACT_NAMES.iter().position(|n| n.as_bytes().eq_ignore_ascii_case(fact)) {
                set |= 1 << i;
            }
        }
        Facts(set)
    }

    /// Appends the selected names, each followed by `;` (the `OPTS MLST` reply).
    pub fn write_selected(self, out: &mut String) {
        for (i, name) in FACT_NAMES.iter().enumerate() {
            if self.has(i) {
                out.push_str(name);
                out.push(';');
            }
        }
    }

    /// The FEAT line: `MLST` and every fact, the selected ones marked with `*`.
    pub fn feature(self) -> String {
        let mut s = String::from("MLST ");
        for (i, name) in FACT_NAMES.iter().enumerate() {
            s.push_str(name);
            if self.has(i) {
                s.push('*');
            }
            s.push(';');
        }
        s
    }
}

/// Appends every MLSx fact and the name; see [`write_selected_facts`].
pub fn write_facts(name: &[u8], meta: &Metadata, writable: bool, out: &mut Vec<u8>) {
    write_selected_facts(name, meta, writable, Facts::ALL, out)
}

/// Appends the selected MLSx facts and the name: `type=file;size=1;modify=...;perm=...;
/// unique=...;UNIX.mode=0644;UNIX.owner=0;UNIX.group=0; name` (no line end: MLSD adds CRLF,
/// MLST puts it in a reply line). A fact the backend does not know is left out.
///
/// A symlink that resolves is described by what it resolves to, so MLSD of a directory and
/// MLST of the same path agree (MLST follows links) and a client fetches it like any file or
/// directory; only a dangling link is `type=OS.unix=symlink`.
pub fn write_selected_facts(name: &[u8], meta: &Metadata, writable: bool, facts: Facts, out: &mut Vec<u8>) {
    let meta = meta.link_resolved.as_deref().unwrap_or(meta);
    let kind = match meta.kind {
        FileKind::Dir => "dir",
        FileKind::File => "file",
        FileKind::Symlink => "OS.unix=symlink",
        FileKind::Other => "OS.unix=other",
    };
    let perm = match (meta.kind, writable) {
        (FileKind::Dir, true) => "cdeflmp",
        (FileKind::Dir, false) => "el",
        (_, true) => "adfrw",
        (_, false) => "r",
    };
    use std::io::Write;
    // Writing to a Vec cannot fail.
    if facts.has(0) {
        let _ = write!(out, "type={kind};");
    }
    if facts.has(1) {
        let _ = write!(out, "size={};", meta.len);
    }
    if let (true, Some(t)) = (facts.has(2), meta.modified) {
        out.extend_from_slice(b"modify=");
        write_timeval(t, out);
        out.push(b';');
    }
    if facts.has(3) {
        let _ = write!(out, "perm={perm};");
    }
    if let (true, Some((dev, ino))) = (facts.has(4), meta.unique) {
        // proftpd's form: device and inode in hex.
        let _ = write!(out, "unique={dev:x}U{ino:x};");
    }
    if facts.has(5) {
        let _ = write!(out, "UNIX.mode={:04o};", meta.mode & 0o7777);
    }
    if let Some((uid, gid)) = meta.owner {
        if facts.has(6) {
            let _ = write!(out, "UNIX.owner={uid};");
        }
        if facts.has(7) {
            let _ = write!(out, "UNIX.group={gid};");
        }
    }
    out.push(b' ');
    write_name(name, out);
}

/// The facts MLST and MLSD report by default, for FEAT.
pub const FACTS_FEATURE: &str = "MLST type*;size*;modify*;perm*;unique*;UNIX.mode*;UNIX.owner*;UNIX.group*;";

/// Parses an MFMT / SITE UTIME time, `YYYYMMDDHHMMSS` in UTC with an optional fraction
/// (`.sss`, draft-somers-ftp-mfxx §3; RFC 3659 §2.3); `None` if malformed or out of range.
pub fn parse_timeval(s: &[u8]) -> Option<SystemTime> {
    let (whole, frac) = match s.iter().position(|&b| b == b'.') {
        Some(i) => (s.get(..i)?, s.get(i + 1..)?),
        None => (s, &b""[..]),
    };
    if whole.len() != 14 || !whole.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if !frac.iter().all(u8::is_ascii_digit) || frac.len() > 9 || (s.contains(&b'.') && frac.is_empty()) {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        whole.get(r)?.iter().try_fold(0u32, |a, &d| Some(a * 10 + u32::from(d - b'0')))
    };
    let (year, month, day) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hour, minute, second) = (num(8..10)?, num(10..12)?, num(12..14)?);
    // A leap second (60) is allowed by RFC 3659 and folds into the next minute.
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let days = days_from_civil(i64::from(year), month, day);
    let secs = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    let mut nanos = 0u32;
    for (i, &d) in frac.iter().enumerate() {
        nanos += u32::from(d - b'0') * 10u32.pow(8 - i as u32);
    }
    let base = match u64::try_from(secs) {
        Ok(s) => UNIX_EPOCH.checked_add(Duration::from_secs(s))?,
        Err(_) => UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs()))?,
    };
    base.checked_add(Duration::from_nanos(u64::from(nanos)))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// (year, month, day) to days since 1970-01-01, the inverse of [`civil_from_days`].
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn calendar() {
        let d = DateTime::from_system_time(at(0));
        assert_eq!((d.year, d.month, d.day, d.hour), (1970, 1, 1, 0));
        // 2024-02-29 12:34:56 UTC, a leap day.
        let d = DateTime::from_system_time(at(1_709_210_096));
        assert_eq!((d.year, d.month, d.day, d.hour, d.minute, d.second), (2024, 2, 29, 12, 34, 56));
        let mut out = Vec::new();
        write_timeval(at(1_709_210_096), &mut out);
        assert_eq!(out, b"20240229123456");
    }

    #[test]
    fn list_lines() {
        let now = at(1_709_210_096);
        let meta = Metadata::new(FileKind::File, 1234).modified(at(1_709_210_096 - 3600)).mode(0o644);
        let mut out = Vec::new();
        write_list_line(b"a\nb.txt", &meta, now, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "-rw-r--r--   1 ftp      ftp               1234 Feb 29 11:34 a?b.txt\r\n"
        );
        let old = Metadata::new(FileKind::Dir, 4096).modified(at(0)).mode(0o755);
        let mut out = Vec::new();
        write_list_line(b"d", &old, now, &mut out);
        assert!(String::from_utf8(out).unwrap().starts_with("drwxr-xr-x "));
    }

    #[test]
    fn facts() {
        let meta = Metadata::new(FileKind::File, 5).modified(at(0)).mode(0o600);
        let mut out = Vec::new();
        write_facts(b"f", &meta, false, &mut out);
        assert_eq!(out, b"type=file;size=5;modify=19700101000000;perm=r;UNIX.mode=0600; f");
    }

    #[test]
    fn selected_facts() {
        let meta =
            Metadata::new(FileKind::File, 5).modified(at(0)).mode(0o600).unique(0x803, 0x1f).owner(1000, 100);
        let mut out = Vec::new();
        write_facts(b"f", &meta, true, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "type=file;size=5;modify=19700101000000;perm=adfrw;unique=803U1f;UNIX.mode=0600;UNIX.owner=1000;UNIX.group=100; f"
        );
        let facts = Facts::parse(b"Size;UNIX.group;bogus;");
        let mut out = Vec::new();
        write_selected_facts(b"f", &meta, true, facts, &mut out);
        assert_eq!(out, b"size=5;UNIX.group=100; f");
        let mut out = Vec::new();
        write_selected_facts(b"f", &meta, true, Facts::NONE, &mut out);
        assert_eq!(out, b" f");
        let mut sel = String::new();
        facts.write_selected(&mut sel);
        assert_eq!(sel, "size;UNIX.group;");
        assert_eq!(facts.feature(), "MLST type;size*;modify;perm;unique;UNIX.mode;UNIX.owner;UNIX.group*;");
        assert_eq!(Facts::ALL.feature(), FACTS_FEATURE);
    }

    #[test]
    fn timevals() {
        assert_eq!(parse_timeval(b"19700101000000"), Some(at(0)));
        assert_eq!(parse_timeval(b"20240229123456"), Some(at(1_709_210_096)));
        assert_eq!(parse_timeval(b"20240229123456.5"), Some(at(1_709_210_096) + Duration::from_millis(500)));
        assert_eq!(parse_timeval(b"19691231235959"), UNIX_EPOCH.checked_sub(Duration::from_secs(1)));
        for bad in [
            &b""[..],
            b"2024022912345",
            b"202402291234567",
            b"20230229000000",
            b"20241301000000",
            b"20240100000000",
            b"20240101240000",
            b"20240101006000",
            b"2024010100000a",
            b"20240101000000.",
            b"20240101000000.x",
            b"+2024010100000",
            b"20240101000000.1234567890",
        ] {
            assert_eq!(parse_timeval(bad), None, "{}", String::from_utf8_lossy(bad));
        }
        // Round trip with the MDTM format.
        for secs in [0, 951_782_400, 1_709_210_096, 4_102_444_800] {
            let mut out = Vec::new();
            write_timeval(at(secs), &mut out);
            assert_eq!(parse_timeval(&out), Some(at(secs)));
        }
    }

    #[test]
    fn symlinks() {
        let now = at(1_709_210_096);
        let target = Metadata::new(FileKind::File, 1234).modified(at(0)).mode(0o600);
        let link = Metadata::new(FileKind::File, 10)
            .modified(at(1_709_210_096 - 60))
            .mode(0o777)
            .symlink(b"target.txt".to_vec(), Some(target));
        assert_eq!(link.kind, FileKind::Symlink);
        let mut out = Vec::new();
        write_list_line(b"link", &link, now, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "lrwxrwxrwx   1 ftp      ftp                 10 Feb 29 12:33 link -> target.txt\r\n"
        );
        // MLSx describe what the link resolves to.
        let mut out = Vec::new();
        write_facts(b"link", &link, true, &mut out);
        assert_eq!(out, b"type=file;size=1234;modify=19700101000000;perm=adfrw;UNIX.mode=0600; link");
        let dir_link = Metadata::new(FileKind::File, 3)
            .symlink(b"../d".to_vec(), Some(Metadata::new(FileKind::Dir, 4096)));
        let mut out = Vec::new();
        write_facts(b"dl", &dir_link, false, &mut out);
        assert_eq!(out, b"type=dir;size=4096;perm=el;UNIX.mode=0755; dl");

        // A dangling link: listed with its target, typed as a link.
        let dangling = Metadata::new(FileKind::File, 7).mode(0o777).symlink(b"missing".to_vec(), None);
        let mut out = Vec::new();
        write_list_line(b"d", &dangling, now, &mut out);
        assert!(String::from_utf8(out).unwrap().ends_with(" d -> missing\r\n"));
        let mut out = Vec::new();
        write_facts(b"d", &dangling, false, &mut out);
        assert_eq!(out, b"type=OS.unix=symlink;size=7;perm=r;UNIX.mode=0777; d");

        // CR and LF in a target cannot split the line.
        let odd = Metadata::new(FileKind::File, 3).symlink(b"a\r\nb".to_vec(), None);
        let mut out = Vec::new();
        write_list_line(b"o", &odd, now, &mut out);
        assert!(out.ends_with(b" o -> a??b\r\n"));
    }
}
