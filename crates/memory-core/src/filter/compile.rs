//! JSON → filter tree. Every error is `invalid_request` and names where in the filter it is
//! (`filter.$or[1].tags.$in must be an array`), so the server can report it under `data.`.

use serde_json::Value;

use super::{Bound, CmpOp, Cond, Node, Op, MAX_CONDITIONS, MAX_FILTER_DEPTH};
use crate::error::{Error, Result};

/// The outermost filter object's keys as nodes, and the number of conditions.
pub(super) fn compile(v: &Value) -> Result<(Vec<Node>, usize)> {
    let mut c = Compiler { size: 0 };
    let root = c.object(v, "filter", 1)?;
    Ok((root, c.size))
}

struct Compiler {
    size: usize,
}

impl Compiler {
    /// Count one more condition against [`MAX_CONDITIONS`].
    fn count(&mut self) -> Result<()> {
        if self.size >= MAX_CONDITIONS {
            return Err(Error::invalid(format!("filter has too many conditions (max {MAX_CONDITIONS})")));
        }
        self.size += 1;
        Ok(())
    }

    /// One filter object found at `at` (`filter`, `filter.$or[0]`, …), `depth` levels deep.
    fn object(&mut self, v: &Value, at: &str, depth: usize) -> Result<Vec<Node>> {
        let obj = v.as_object().ok_or_else(|| match depth {
            1 => Error::invalid("filter must be an object"),
            _ => Error::invalid(format!("{at}: must be an object")),
        })?;
        let mut out = Vec::with_capacity(obj.len());
        for (key, spec) in obj {
            if key.starts_with('$') {
                out.push(self.logical(key, spec, at, depth)?);
                continue;
            }
            if key.is_empty() {
                return Err(Error::invalid(format!("{at}: empty key")));
            }
            let segments: Vec<String> = key.split('.').map(str::to_owned).collect();
            if segments.iter().any(|s| s.is_empty()) {
                return Err(Error::invalid(format!("{at}.{key}: empty path segment in key \"{key}\"")));
            }
            let mk = |op: Op| Node::Cond(Cond { path: key.clone(), segments: segments.clone(), op });
            match spec {
                Value::Object(m) if m.keys().any(|k| k.starts_with('$')) => {
                    if let Some(plain) = m.keys().find(|k| !k.starts_with('$')) {
                        let opk = m.keys().find(|k| k.starts_with('$')).map_or("", String::as_str);
                        return Err(Error::invalid(format!(
                            "{at}.{key}: cannot mix operators ({opk}) and plain keys ({plain}) in one object"
                        )));
                    }
                    for (opname, arg) in m {
                        let op = field_op(&format!("{at}.{key}"), opname, arg)?;
                        self.count()?;
                        out.push(mk(op));
                    }
                }
                other => {
                    self.count()?;
                    out.push(mk(Op::Eq(other.clone())));
                }
            }
        }
        Ok(out)
    }

    /// `$and` / `$or` / `$not` of the filter object at `at`.
    fn logical(&mut self, op: &str, arg: &Value, at: &str, depth: usize) -> Result<Node> {
        match op {
            "$and" | "$or" => {
                let items = match arg {
                    Value::Array(a) if !a.is_empty() => a,
                    _ => return Err(Error::invalid(format!("{at}.{op}: must be a non-empty array of filters"))),
                };
                let mut children = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    children.push(self.sub_filter(item, &format!("{at}.{op}[{i}]"), depth)?);
                }
                Ok(if op == "$and" { Node::And(children) } else { Node::Or(children) })
            }
            "$not" => Ok(Node::Not(Box::new(self.sub_filter(arg, &format!("{at}.$not"), depth)?))),
            _ => Err(Error::invalid(format!("{at}: unknown operator {op}"))),
        }
    }

    /// A filter object inside a logical operator of a filter `depth` levels deep.
    fn sub_filter(&mut self, v: &Value, at: &str, depth: usize) -> Result<Node> {
        if depth >= MAX_FILTER_DEPTH {
            return Err(Error::invalid(format!("{at}: filters nest deeper than {MAX_FILTER_DEPTH} levels")));
        }
        self.count()?;
        Ok(Node::And(self.object(v, at, depth + 1)?))
    }
}

/// One operator of a condition object on the path at `at` (`filter.tags`).
fn field_op(at: &str, opname: &str, arg: &Value) -> Result<Op> {
    let cmp = |op: CmpOp| -> Result<Op> {
        match arg {
            Value::Number(n) => Ok(Op::Cmp(op, Bound::Num(n.clone()))),
            Value::String(s) => Ok(Op::Cmp(op, Bound::Str(s.clone()))),
            _ => Err(Error::invalid(format!("{at}.{opname} must be a number or a string"))),
        }
    };
    let list = || -> Result<Vec<Value>> {
        match arg {
            Value::Array(a) => Ok(a.clone()),
            _ => Err(Error::invalid(format!("{at}.{opname} must be an array"))),
        }
    };
    match opname {
        "$in" => Ok(Op::In(list()?)),
        "$nin" => Ok(Op::Nin(list()?)),
        "$gt" => cmp(CmpOp::Gt),
        "$gte" => cmp(CmpOp::Gte),
        "$lt" => cmp(CmpOp::Lt),
        "$lte" => cmp(CmpOp::Lte),
        "$ne" => Ok(Op::Ne(arg.clone())),
        "$exists" => match arg {
            Value::Bool(b) => Ok(Op::Exists(*b)),
            _ => Err(Error::invalid(format!("{at}.$exists must be a boolean"))),
        },
        "$contains" => Ok(Op::Contains(arg.clone())),
        "$all" => match arg {
            Value::Array(a) if !a.is_empty() => Ok(Op::All(a.clone())),
            _ => Err(Error::invalid(format!("{at}.$all: must be a non-empty array"))),
        },
        other => Err(Error::invalid(format!("{at}: unknown operator {other}"))),
    }
}
