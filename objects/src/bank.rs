use crate::util::{py_float, Key};
use crate::{reply, Args, CallContext, ObjectError, Outcome, ReplicatedObject};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// ConCoord's Bank: `open(accnt) -> bool` (false if it exists),
/// `close(accnt) -> true`, `debit(accnt, amount)`, `deposit(accnt, amount)`,
/// `balance(accnt)`. An unknown account raises `KeyError`.
///
/// As in ConCoord, amounts are floats (`float(amount)`, so numeric strings
/// work), `debit` refuses an overdraft by returning `false` and otherwise
/// returns the new balance, and `deposit` returns the new balance. Amounts
/// that are not finite are refused (ValueError) so a balance stays a number.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Bank {
    accounts: BTreeMap<Key, f64>,
}

fn amount(args: &Args) -> Result<f64, ObjectError> {
    let amount = py_float(&args.raw(1, "amount")?, "amount")?;
    if !amount.is_finite() {
        return Err(ObjectError::value("amount must be a finite number"));
    }
    Ok(amount)
}

impl Bank {
    fn account(&mut self, key: &Key) -> Result<&mut f64, ObjectError> {
        self.accounts.get_mut(key).ok_or_else(|| key.missing())
    }

    fn dispatch(&mut self, method: &str, args: &Args) -> Result<Outcome, ObjectError> {
        match method {
            "open" => {
                args.at_most(1)?;
                let key = Key::arg(args, 0, "accnt")?;
                if self.accounts.contains_key(&key) {
                    return Ok(reply(&false));
                }
                self.accounts.insert(key, 0.0);
                Ok(reply(&true))
            }
            "close" => {
                args.at_most(1)?;
                let key = Key::arg(args, 0, "accnt")?;
                self.accounts.remove(&key).ok_or_else(|| key.missing())?;
                Ok(reply(&true))
            }
            "debit" => {
                args.at_most(2)?;
                let key = Key::arg(args, 0, "accnt")?;
                let amount = amount(args)?;
                let balance = self.account(&key)?;
                if amount <= *balance {
                    *balance -= amount;
                    Ok(reply(balance))
                } else {
                    Ok(reply(&false))
                }
            }
            "deposit" => {
                args.at_most(2)?;
                let key = Key::arg(args, 0, "accnt")?;
                let amount = amount(args)?;
                let balance = self.account(&key)?;
                *balance += amount;
                Ok(reply(balance))
            }
            "balance" => {
                args.at_most(1)?;
                let key = Key::arg(args, 0, "accnt")?;
                Ok(reply(self.account(&key)?))
            }
            _ => Err(ObjectError::unknown_method(Self::NAME, method)),
        }
    }
}

impl ReplicatedObject for Bank {
    const NAME: &'static str = "Bank";

    fn call(&mut self, method: &str, args: &Args, _ctx: &mut CallContext<'_>) -> Outcome {
        self.dispatch(method, args)
            .unwrap_or_else(|e| Outcome::Reply(Err(e)))
    }

    fn is_read_only(method: &str) -> bool {
        method == "balance"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::*;
    use rmpv::Value as V;

    #[test]
    fn accounts() {
        let mut h = Harness::<Bank>::new();
        assert!(h.ok::<bool>(1, "open", &[v("alice")]));
        assert!(!h.ok::<bool>(1, "open", &[v("alice")]));
        assert!(h.ok::<bool>(1, "open", &[v(7)]));
        assert_eq!(h.ok::<f64>(1, "balance", &[v("alice")]), 0.0);
        assert_eq!(h.ok::<f64>(1, "deposit", &[v("alice"), v(100)]), 100.0);
        assert_eq!(h.ok::<f64>(1, "deposit", &[v("alice"), v("2.5")]), 102.5);
        h.round_trip();
        assert_eq!(
            h.ok::<V>(1, "debit", &[v("alice"), v(200)]),
            V::Boolean(false)
        );
        assert_eq!(h.ok::<f64>(1, "debit", &[v("alice"), v(2.5)]), 100.0);
        assert_eq!(h.ok::<f64>(1, "debit", &[v("alice"), v(100)]), 0.0);
        // Integer-valued floats name the same account, as in a Python dict.
        assert_eq!(h.ok::<f64>(1, "deposit", &[v(7.0), v(1)]), 1.0);
        assert!(h.ok::<bool>(1, "close", &[v("alice")]));
    }

    #[test]
    fn errors() {
        let mut h = Harness::<Bank>::new();
        let e = h.err(1, "balance", &[v("bob")]);
        assert_eq!((e.kind.as_str(), e.message.as_str()), ("KeyError", "'bob'"));
        assert_eq!(h.err(1, "close", &[v("bob")]).kind, "KeyError");
        assert_eq!(h.err(1, "debit", &[v("bob"), v(1)]).kind, "KeyError");
        assert_eq!(h.err(1, "deposit", &[v("bob"), v(1)]).kind, "KeyError");
        assert!(h.ok::<bool>(1, "open", &[v("bob")]));
        let e = h.err(1, "deposit", &[v("bob"), v("lots")]);
        assert_eq!(
            (e.kind.as_str(), e.message.as_str()),
            ("ValueError", "could not convert string to float: 'lots'")
        );
        assert_eq!(
            h.err(1, "deposit", &[v("bob"), v(f64::INFINITY)]).kind,
            "ValueError"
        );
        assert_eq!(h.err(1, "deposit", &[v("bob"), V::Nil]).kind, "TypeError");
        assert_eq!(
            h.err(1, "deposit", &[v("bob")]).kind,
            ObjectError::BAD_ARGUMENTS
        );
        assert_eq!(h.err(1, "open", &[V::Map(vec![])]).kind, "TypeError");
        assert_eq!(h.err(1, "transfer", &[]).kind, ObjectError::UNKNOWN_METHOD);
    }
}
