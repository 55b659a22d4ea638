//go:build negativecontrol

package states

import (
	"os"
	"slices"
	"strings"
)

// revertedRules lists the rules a negative control switched off
// (KOMMODITY_REVERT=w1,w7,...). Test builds only.
var revertedRules = strings.Split(os.Getenv("KOMMODITY_REVERT"), ",")

func reverted(rule string) bool { return slices.Contains(revertedRules, rule) }
