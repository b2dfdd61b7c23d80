//! ATen operator schemas (`aten::add.out(Tensor self, Tensor other, *, Scalar alpha=1,
//! Tensor(a!) out) -> Tensor(a!)`), parsed just far enough to know what a call reads and writes.
//!
//! A kernel registers with its schema string. At method load the engine checks each call's
//! argument count against it and learns which positions the kernel may write: arguments annotated
//! `(x!)` and return values that are not aliases of such an argument.

use crate::args::MAX_ARGS;

/// The parts of a schema the runtime needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpSchema {
    /// `namespace::name.overload`, e.g. `aten::add.out` (no `.` suffix when the overload is empty).
    pub qualified_name: String,
    /// Argument kinds in order.
    pub args: Vec<ArgSpec>,
    /// Return values in order.
    pub returns: Vec<ReturnSpec>,
}

/// One argument of a schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgSpec {
    pub name: String,
    /// The type as written, without alias annotation, e.g. `Tensor`, `int[]`, `Scalar?`.
    pub ty: String,
    /// Annotated `(x!)`: the kernel writes it.
    pub mutable: bool,
    /// The alias set letter, if annotated.
    pub alias: Option<char>,
}

/// One return value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReturnSpec {
    pub ty: String,
    /// Index of the argument this return aliases (same alias set), if any.
    pub aliases_arg: Option<usize>,
}

/// Why a schema string did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad operator schema '{schema}': {reason}")]
pub struct SchemaError {
    pub schema: String,
    pub reason: &'static str,
}

impl OpSchema {
    /// Parses a schema string.
    pub fn parse(text: &str) -> Result<OpSchema, SchemaError> {
        let err = |reason| SchemaError { schema: text.to_string(), reason };
        let open = text.find('(').ok_or(err("no '('"))?;
        let qualified_name = text[..open].trim().to_string();
        if qualified_name.is_empty() || !qualified_name.contains("::") {
            return Err(err("name must be namespace::name[.overload]"));
        }
        let close = matching_paren(text, open).ok_or(err("unbalanced parentheses"))?;
        let mut args = Vec::new();
        for part in split_top_level(&text[open + 1..close]) {
            let part = part.trim();
            if part.is_empty() || part == "*" {
                continue;
            }
            let decl = part.split('=').next().unwrap_or(part).trim();
            let (ty, name) = decl.rsplit_once(char::is_whitespace).ok_or(err("argument without a name"))?;
            let (ty, alias, mutable) = parse_type(ty.trim());
            args.push(ArgSpec { name: name.trim().to_string(), ty, mutable, alias });
        }
        if args.len() > MAX_ARGS {
            return Err(err("more than 64 arguments"));
        }
        let rest = text[close + 1..].trim();
        let returns_text = rest.strip_prefix("->").ok_or(err("no '->'"))?.trim();
        let returns_text = if returns_text.starts_with('(') && returns_text.ends_with(')') {
            &returns_text[1..returns_text.len() - 1]
        } else {
            returns_text
        };
        let mut returns = Vec::new();
        for part in split_top_level(returns_text) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            // A return may be named: `Tensor(a!) values`.
            let ty_text = match part.rsplit_once(char::is_whitespace) {
                Some((t, _)) if !t.trim().is_empty() => t.trim(),
                _ => part,
            };
            let (ty, alias, _) = parse_type(ty_text);
            let aliases_arg = alias.and_then(|a| args.iter().position(|x| x.alias == Some(a)));
            returns.push(ReturnSpec { ty, aliases_arg });
        }
        Ok(OpSchema { qualified_name, args, returns })
    }

    /// Number of value slots a call passes: arguments, then returns.
    pub fn slot_count(&self) -> usize {
        self.args.len() + self.returns.len()
    }

    /// Bitmask of the positions a kernel may write: mutable arguments, and returns that alias no
    /// argument (their slots follow the arguments).
    pub fn writable_mask(&self) -> u64 {
        let mut mask = 0u64;
        for (i, a) in self.args.iter().enumerate() {
            if a.mutable {
                mask |= 1 << i;
            }
        }
        for (j, r) in self.returns.iter().enumerate() {
            let pos = self.args.len() + j;
            if r.aliases_arg.is_none() && pos < MAX_ARGS {
                mask |= 1 << pos;
            }
        }
        mask
    }
}

fn matching_paren(text: &str, open: usize) -> Option<usize> {
    let mut depth = 0i32;
    for (i, c) in text.char_indices().skip_while(|(i, _)| *i < open) {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Splits on commas outside brackets and parentheses.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

/// `Tensor(a!)[]` → (`Tensor[]`, Some('a'), true).
fn parse_type(ty: &str) -> (String, Option<char>, bool) {
    if let (Some(open), Some(close)) = (ty.find('('), ty.find(')'))
        && open < close
    {
        let inner = &ty[open + 1..close];
        let mutable = inner.contains('!');
        let alias = inner.chars().find(|c| c.is_ascii_alphabetic());
        let stripped = format!("{}{}", &ty[..open], &ty[close + 1..]);
        return (stripped, alias, mutable);
    }
    (ty.to_string(), None, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_variant() {
        let s = OpSchema::parse(
            "aten::add.out(Tensor self, Tensor other, *, Scalar alpha=1, Tensor(a!) out) -> Tensor(a!)",
        )
        .unwrap();
        assert_eq!(s.qualified_name, "aten::add.out");
        assert_eq!(s.args.len(), 4);
        assert!(s.args[3].mutable);
        assert_eq!(s.returns[0].aliases_arg, Some(3));
        assert_eq!(s.slot_count(), 5);
        assert_eq!(s.writable_mask(), 0b1000);
    }

    #[test]
    fn lists_defaults_and_tuples() {
        let s = OpSchema::parse(
            "aten::max_pool2d_with_indices.out(Tensor self, int[2] kernel_size, int[2] stride=[], int[2] padding=0, int[2] dilation=1, bool ceil_mode=False, *, Tensor(a!) out, Tensor(b!) indices) -> (Tensor(a!), Tensor(b!))",
        )
        .unwrap();
        assert_eq!(s.args.len(), 8);
        assert_eq!(s.returns.len(), 2);
        assert_eq!(s.returns[1].aliases_arg, Some(7));
        assert_eq!(s.writable_mask(), 0b1100_0000);
        let s = OpSchema::parse(
            "aten::split_with_sizes_copy.out(Tensor self, SymInt[] split_sizes, int dim=0, *, Tensor(a!)[] out) -> ()",
        )
        .unwrap();
        assert_eq!(s.args[3].ty, "Tensor[]");
        assert!(s.args[3].mutable);
        assert_eq!(s.returns.len(), 0);
        let s =
            OpSchema::parse("aten::copy_(Tensor(a!) self, Tensor src, bool non_blocking=False) -> Tensor(a!)").unwrap();
        assert_eq!(s.qualified_name, "aten::copy_");
        assert_eq!(s.writable_mask(), 1);
        let s = OpSchema::parse("executorch_prim::add.Scalar(Scalar a, Scalar b) -> Scalar").unwrap();
        assert_eq!(s.writable_mask(), 0b100);
    }

    #[test]
    fn rejects_garbage() {
        assert!(OpSchema::parse("add(Tensor a) -> Tensor").is_err());
        assert!(OpSchema::parse("aten::add(Tensor a").is_err());
        assert!(OpSchema::parse("aten::add(Tensor) -> Tensor").is_err());
    }
}
