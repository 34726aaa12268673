use crate::util::py_int;
use crate::{reply, Args, CallContext, ObjectError, Outcome, ReplicatedObject};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Nodes of one subdomain, by node type.
type Nodes = BTreeMap<i64, BTreeSet<String>>;

/// ConCoord's NameserverCoord (OpenReplica's DNS coordination): for each
/// subdomain, the nodes of each type. Subdomain names without
/// "openreplica" get ".openreplica.org." appended, as in ConCoord.
///
/// `addnodetosubdomain(subdomain, nodetype, node)`,
/// `delnodefromsubdomain(subdomain, nodetype, node) -> bool`,
/// `updatesubdomain(subdomain, {nodetype: [node, ...]})`,
/// `delsubdomain(subdomain) -> bool`, `getnodes(subdomain) -> {nodetype:
/// [node, ...]}` (`KeyError` if unknown), `getsubdomains()` (first labels),
/// `getdomains()` (full names).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NameserverCoord {
    nodes: BTreeMap<String, Nodes>,
}

fn subdomain(args: &Args) -> Result<String, ObjectError> {
    let name: String = args.get(0, "subdomain")?;
    Ok(if name.contains("openreplica") {
        name
    } else {
        name + ".openreplica.org."
    })
}

fn nodetype(args: &Args) -> Result<i64, ObjectError> {
    py_int(&args.raw(1, "nodetype")?, "nodetype")
}

impl NameserverCoord {
    fn dispatch(&mut self, method: &str, args: &Args) -> Result<Outcome, ObjectError> {
        match method {
            "addnodetosubdomain" => {
                args.at_most(3)?;
                let (sub, kind) = (subdomain(args)?, nodetype(args)?);
                let node: String = args.get(2, "node")?;
                self.nodes
                    .entry(sub)
                    .or_default()
                    .entry(kind)
                    .or_default()
                    .insert(node);
                Ok(reply(&()))
            }
            "delnodefromsubdomain" => {
                args.at_most(3)?;
                let (sub, kind) = (subdomain(args)?, nodetype(args)?);
                let node: String = args.get(2, "node")?;
                let removed = self
                    .nodes
                    .get_mut(&sub)
                    .and_then(|types| types.get_mut(&kind))
                    .is_some_and(|set| set.remove(&node));
                Ok(reply(&removed))
            }
            "updatesubdomain" => {
                args.at_most(2)?;
                let sub = subdomain(args)?;
                let nodes: Nodes = args.get(1, "nodes")?;
                self.nodes.insert(sub, nodes);
                Ok(reply(&()))
            }
            "delsubdomain" => {
                args.at_most(1)?;
                let sub = subdomain(args)?;
                Ok(reply(&self.nodes.remove(&sub).is_some()))
            }
            "getnodes" => {
                args.at_most(1)?;
                let sub = subdomain(args)?;
                let nodes = self
                    .nodes
                    .get(&sub)
                    .ok_or_else(|| ObjectError::key(format!("'{sub}'")))?;
                Ok(reply(nodes))
            }
            "getsubdomains" => {
                args.at_most(0)?;
                let labels: Vec<&str> = self
                    .nodes
                    .keys()
                    .map(|d| d.split('.').next().unwrap_or(""))
                    .collect();
                Ok(reply(&labels))
            }
            "getdomains" => {
                args.at_most(0)?;
                Ok(reply(&self.nodes.keys().collect::<Vec<_>>()))
            }
            _ => Err(ObjectError::unknown_method(Self::NAME, method)),
        }
    }
}

impl ReplicatedObject for NameserverCoord {
    const NAME: &'static str = "NameserverCoord";

    fn call(&mut self, method: &str, args: &Args, _ctx: &mut CallContext<'_>) -> Outcome {
        self.dispatch(method, args)
            .unwrap_or_else(|e| Outcome::Reply(Err(e)))
    }

    fn is_read_only(method: &str) -> bool {
        matches!(method, "getnodes" | "getsubdomains" | "getdomains")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::*;
    use rmpv::Value as V;

    #[test]
    fn subdomains_and_nodes() {
        let mut h = Harness::<NameserverCoord>::new();
        h.ok::<()>(1, "addnodetosubdomain", &[v("foo"), v(2), v("10.0.0.1")]);
        h.ok::<()>(1, "addnodetosubdomain", &[v("foo"), v("2"), v("10.0.0.2")]);
        h.ok::<()>(
            1,
            "addnodetosubdomain",
            &[v("bar.openreplica.org."), v(1), v("10.0.0.3")],
        );
        assert_eq!(h.ok::<Vec<String>>(1, "getsubdomains", &[]), ["bar", "foo"]);
        assert_eq!(
            h.ok::<Vec<String>>(1, "getdomains", &[]),
            ["bar.openreplica.org.", "foo.openreplica.org."]
        );
        h.round_trip();
        let nodes = h.ok::<Nodes>(1, "getnodes", &[v("foo")]);
        assert_eq!(
            nodes[&2].iter().collect::<Vec<_>>(),
            ["10.0.0.1", "10.0.0.2"]
        );
        assert!(h.ok::<bool>(1, "delnodefromsubdomain", &[v("foo"), v(2), v("10.0.0.1")]));
        assert!(!h.ok::<bool>(1, "delnodefromsubdomain", &[v("foo"), v(2), v("10.0.0.1")]));
        assert!(!h.ok::<bool>(1, "delnodefromsubdomain", &[v("nope"), v(2), v("x")]));
        let update = V::Map(vec![(v(3), V::Array(vec![v("n1"), v("n2")]))]);
        h.ok::<()>(1, "updatesubdomain", &[v("foo"), update]);
        let nodes = h.ok::<Nodes>(1, "getnodes", &[v("foo.openreplica.org.")]);
        assert_eq!(nodes.keys().collect::<Vec<_>>(), [&3]);
        assert!(h.ok::<bool>(1, "delsubdomain", &[v("foo")]));
        assert!(!h.ok::<bool>(1, "delsubdomain", &[v("foo")]));
    }

    #[test]
    fn errors() {
        let mut h = Harness::<NameserverCoord>::new();
        let e = h.err(1, "getnodes", &[v("foo")]);
        assert_eq!(
            (e.kind.as_str(), e.message.as_str()),
            ("KeyError", "'foo.openreplica.org.'")
        );
        let e = h.err(1, "addnodetosubdomain", &[v("foo"), v("ns"), v("n")]);
        assert_eq!(
            (e.kind.as_str(), e.message.as_str()),
            ("ValueError", "invalid literal for int() with base 10: 'ns'")
        );
        assert_eq!(
            h.err(1, "addnodetosubdomain", &[v("foo"), v(1)]).kind,
            ObjectError::BAD_ARGUMENTS
        );
        assert_eq!(
            h.err(1, "updatesubdomain", &[v("foo"), v(1)]).kind,
            ObjectError::BAD_ARGUMENTS
        );
        assert_eq!(
            h.err(1, "getdomains", &[v(1)]).kind,
            ObjectError::BAD_ARGUMENTS
        );
        assert_eq!(h.err(1, "resolve", &[]).kind, ObjectError::UNKNOWN_METHOD);
    }
}
