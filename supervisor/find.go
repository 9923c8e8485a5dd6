package supervisor

// Find returns the node at path in the snapshot rooted at n (n itself
// included), and whether there is one.
func (n Node) Find(path string) (Node, bool) {
	if n.Path == path {
		return n, true
	}
	for _, c := range n.Children {
		if m, ok := c.Find(path); ok {
			return m, true
		}
	}
	return Node{}, false
}
