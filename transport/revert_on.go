//go:build negativecontrol

package transport

import (
	"os"
	"slices"
	"strings"
)

// revertedRules lists the rules a negative control switched off
// (KOMMODITY_REVERT=finished,...). Test builds only.
var revertedRules = strings.Split(os.Getenv("KOMMODITY_REVERT"), ",")

func reverted(rule string) bool { return slices.Contains(revertedRules, rule) }
