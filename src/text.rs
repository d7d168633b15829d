//! Text the commands print for people: aligned tables and short durations.
//! Shared by `logins` and `sessions`, so their output looks alike.

use std::time::Duration;

/// Rows (the header first) as left-aligned columns two spaces apart, each
/// line starting with `indent` and without trailing spaces.
pub fn columns<const N: usize>(rows: &[[String; N]], indent: &str) -> String {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = indent.to_owned();
        for (cell, w) in row.iter().zip(widths) {
            line.push_str(&format!("{cell:<w$}  "));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A duration in its two largest units: `45s`, `12m5s`, `3h12m`, `2d4h`.
pub fn duration(d: Duration) -> String {
    let s = d.as_secs();
    let (days, hours, mins, secs) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    let (big, small) = if days > 0 {
        ((days, 'd'), (hours, 'h'))
    } else if hours > 0 {
        ((hours, 'h'), (mins, 'm'))
    } else if mins > 0 {
        ((mins, 'm'), (secs, 's'))
    } else {
        return format!("{secs}s");
    };
    if small.0 == 0 {
        format!("{}{}", big.0, big.1)
    } else {
        format!("{}{}{}{}", big.0, big.1, small.0, small.1)
    }
}
