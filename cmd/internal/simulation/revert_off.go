//go:build !negativecontrol

package simulation

// revertW8: the W8 negative control also takes discovery's own guard away
// (it drops this node's boot id at any address), so that only election's
// rule stands between an alias of this node and a double count.
const revertW8 = false
