use crate::util::cmp_values;
use crate::{reply, Args, CallContext, ObjectError, Outcome, ReplicatedObject};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Node {
    data: rmpv::Value,
    left: Option<usize>,
    right: Option<usize>,
}

/// Where a subtree hangs: the root, or a child slot of a node.
#[derive(Clone, Copy)]
enum Link {
    Root,
    Left(usize),
    Right(usize),
}

/// ConCoord's BinaryTree: an unbalanced binary search tree of values
/// (equal values go left, as in ConCoord).
///
/// ConCoord passed tree nodes in and out of every method, which cannot cross
/// the network; here the object owns its root and the methods take only the
/// data: `insert(data)` (and ConCoord's `add_node(data)`, same),
/// `find(target) -> bool`, `delete(target) -> bool` (one occurrence),
/// `get_min()`, `get_max()` (`ValueError` on an empty tree), `get_depth()`,
/// `get_size()`. Values of different types are ordered by type first.
///
/// Nodes live in an arena so no operation (or snapshot) recurses: a
/// degenerate tree from sorted inserts is as deep as it is long.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BinaryTree {
    nodes: Vec<Node>,
    free: Vec<usize>,
    root: Option<usize>,
}

fn empty_tree() -> ObjectError {
    ObjectError::value("empty tree")
}

impl BinaryTree {
    fn child(&self, link: Link) -> Option<usize> {
        match link {
            Link::Root => self.root,
            Link::Left(i) => self.nodes[i].left,
            Link::Right(i) => self.nodes[i].right,
        }
    }

    fn set_child(&mut self, link: Link, to: Option<usize>) {
        match link {
            Link::Root => self.root = to,
            Link::Left(i) => self.nodes[i].left = to,
            Link::Right(i) => self.nodes[i].right = to,
        }
    }

    fn insert(&mut self, data: rmpv::Value) {
        let mut link = Link::Root;
        while let Some(i) = self.child(link) {
            link = match cmp_values(&data, &self.nodes[i].data) {
                Ordering::Greater => Link::Right(i),
                _ => Link::Left(i),
            };
        }
        let node = Node {
            data,
            left: None,
            right: None,
        };
        let at = match self.free.pop() {
            Some(at) => {
                self.nodes[at] = node;
                at
            }
            None => {
                self.nodes.push(node);
                self.nodes.len() - 1
            }
        };
        self.set_child(link, Some(at));
    }

    /// The link holding the first node equal to `target`, as ConCoord's find walks.
    fn find(&self, target: &rmpv::Value) -> Option<(Link, usize)> {
        let mut link = Link::Root;
        while let Some(i) = self.child(link) {
            link = match cmp_values(target, &self.nodes[i].data) {
                Ordering::Equal => return Some((link, i)),
                Ordering::Less => Link::Left(i),
                Ordering::Greater => Link::Right(i),
            };
        }
        None
    }

    fn free_node(&mut self, i: usize) {
        self.nodes[i] = Node {
            data: rmpv::Value::Nil,
            left: None,
            right: None,
        };
        self.free.push(i);
    }

    fn delete(&mut self, target: &rmpv::Value) -> bool {
        let Some((link, i)) = self.find(target) else {
            return false;
        };
        match (self.nodes[i].left, self.nodes[i].right) {
            (None, only) | (only, None) => {
                self.set_child(link, only);
                self.free_node(i);
            }
            (Some(left), Some(_)) => {
                // Replace with the predecessor (rightmost of the left subtree):
                // with equal values kept on the left, the successor could leave
                // an equal value in the right subtree.
                let (mut plink, mut p) = (Link::Left(i), left);
                while let Some(r) = self.nodes[p].right {
                    (plink, p) = (Link::Right(p), r);
                }
                let p_left = self.nodes[p].left;
                self.set_child(plink, p_left);
                self.nodes[i].data = std::mem::replace(&mut self.nodes[p].data, rmpv::Value::Nil);
                self.free_node(p);
            }
        }
        true
    }

    fn extreme(&self, rightwards: bool) -> Result<&rmpv::Value, ObjectError> {
        let mut i = self.root.ok_or_else(empty_tree)?;
        while let Some(next) = if rightwards {
            self.nodes[i].right
        } else {
            self.nodes[i].left
        } {
            i = next;
        }
        Ok(&self.nodes[i].data)
    }

    fn depth(&self) -> usize {
        let mut deepest = 0;
        let mut stack: Vec<(usize, usize)> = self.root.map(|r| (r, 1)).into_iter().collect();
        while let Some((i, depth)) = stack.pop() {
            deepest = deepest.max(depth);
            let node = &self.nodes[i];
            stack.extend(node.left.iter().chain(&node.right).map(|&c| (c, depth + 1)));
        }
        deepest
    }

    fn dispatch(&mut self, method: &str, args: &Args) -> Result<Outcome, ObjectError> {
        match method {
            "insert" | "add_node" => {
                args.at_most(1)?;
                self.insert(args.raw(0, "data")?);
                Ok(reply(&()))
            }
            "find" => {
                args.at_most(1)?;
                Ok(reply(&self.find(&args.raw(0, "target")?).is_some()))
            }
            "delete" => {
                args.at_most(1)?;
                Ok(reply(&self.delete(&args.raw(0, "target")?)))
            }
            "get_min" => {
                args.at_most(0)?;
                Ok(reply(self.extreme(false)?))
            }
            "get_max" => {
                args.at_most(0)?;
                Ok(reply(self.extreme(true)?))
            }
            "get_depth" => {
                args.at_most(0)?;
                Ok(reply(&self.depth()))
            }
            "get_size" => {
                args.at_most(0)?;
                Ok(reply(&(self.nodes.len() - self.free.len())))
            }
            _ => Err(ObjectError::unknown_method(Self::NAME, method)),
        }
    }
}

impl ReplicatedObject for BinaryTree {
    const NAME: &'static str = "BinaryTree";

    fn call(&mut self, method: &str, args: &Args, _ctx: &mut CallContext<'_>) -> Outcome {
        self.dispatch(method, args)
            .unwrap_or_else(|e| Outcome::Reply(Err(e)))
    }

    fn is_read_only(method: &str) -> bool {
        matches!(
            method,
            "find" | "get_min" | "get_max" | "get_depth" | "get_size"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::*;

    /// In-order walk, checking the search-tree invariant on the way.
    fn in_order(t: &BinaryTree) -> Vec<i64> {
        let mut out = Vec::new();
        let mut stack = Vec::new();
        let mut cur = t.root;
        while cur.is_some() || !stack.is_empty() {
            while let Some(i) = cur {
                stack.push(i);
                cur = t.nodes[i].left;
            }
            let i = stack.pop().unwrap();
            out.push(t.nodes[i].data.as_i64().unwrap());
            cur = t.nodes[i].right;
        }
        assert!(out.windows(2).all(|w| w[0] <= w[1]), "{out:?}");
        out
    }

    #[test]
    fn search_tree_operations() {
        let mut h = Harness::<BinaryTree>::new();
        assert_eq!(h.ok::<usize>(1, "get_depth", &[]), 0);
        assert_eq!(h.ok::<usize>(1, "get_size", &[]), 0);
        for x in [50, 30, 70, 20, 40, 60, 80, 30, 35] {
            h.ok::<()>(1, "insert", &[v(x)]);
        }
        h.ok::<()>(1, "add_node", &[v(45)]);
        assert_eq!(h.ok::<usize>(1, "get_size", &[]), 10);
        assert_eq!(h.ok::<usize>(1, "get_depth", &[]), 4);
        assert_eq!(h.ok::<i64>(1, "get_min", &[]), 20);
        assert_eq!(h.ok::<i64>(1, "get_max", &[]), 80);
        assert!(h.ok::<bool>(1, "find", &[v(35)]));
        assert!(h.ok::<bool>(1, "find", &[v(35.0)]));
        assert!(!h.ok::<bool>(1, "find", &[v(36)]));
        h.round_trip();
        // Two children (root), a duplicate, a leaf, a missing value.
        assert!(h.ok::<bool>(1, "delete", &[v(50)]));
        assert!(h.ok::<bool>(1, "delete", &[v(30)]));
        assert!(h.ok::<bool>(1, "find", &[v(30)]), "one copy of 30 remains");
        assert!(h.ok::<bool>(1, "delete", &[v(30)]));
        assert!(!h.ok::<bool>(1, "find", &[v(30)]));
        assert!(h.ok::<bool>(1, "delete", &[v(80)]));
        assert!(!h.ok::<bool>(1, "delete", &[v(99)]));
        assert_eq!(in_order(&h.hosted.object), vec![20, 35, 40, 45, 60, 70]);
        assert_eq!(h.ok::<usize>(1, "get_size", &[]), 6);
        // Freed slots are reused.
        h.ok::<()>(1, "insert", &[v(1)]);
        assert_eq!(h.hosted.object.nodes.len(), 10);
        for x in [1, 20, 35, 40, 45, 60, 70] {
            assert!(h.ok::<bool>(1, "delete", &[v(x)]));
        }
        assert_eq!(h.ok::<usize>(1, "get_size", &[]), 0);
        let e = h.err(1, "get_min", &[]);
        assert_eq!(
            (e.kind.as_str(), e.message.as_str()),
            ("ValueError", "empty tree")
        );
        assert_eq!(h.err(1, "get_max", &[]).kind, "ValueError");
        assert_eq!(h.err(1, "insert", &[]).kind, ObjectError::BAD_ARGUMENTS);
        assert_eq!(h.err(1, "balance", &[]).kind, ObjectError::UNKNOWN_METHOD);
    }

    #[test]
    fn deep_degenerate_tree_does_not_recurse() {
        let mut h = Harness::<BinaryTree>::new();
        for x in 0..20_000 {
            h.ok::<()>(1, "insert", &[v(x)]);
        }
        assert_eq!(h.ok::<usize>(1, "get_depth", &[]), 20_000);
        h.round_trip();
        assert_eq!(h.ok::<i64>(1, "get_max", &[]), 19_999);
    }
}
