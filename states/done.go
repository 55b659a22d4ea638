package states

import "github.com/kommodity-io/kommodity-autobootstrap-extension/fsm"

// Done is terminal and has no handler: reaching it ends the run with exit 0,
// which tells Talos (restart: untilSuccess) and the operator that this node
// is part of a healthy etcd cluster, or is a worker with nothing to do.
const Done = fsm.Done
