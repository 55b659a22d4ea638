package election

import (
	"go/ast"
	"go/doc"
	"go/parser"
	"go/token"
	"io/fs"
	"strings"
	"testing"
)

// Every exported name of the package has a comment that go doc shows: the
// rules are read from here.
func TestEveryExportedNameIsDocumented(t *testing.T) {
	fset := token.NewFileSet()

	pkgs, err := parser.ParseDir(fset, ".", func(fi fs.FileInfo) bool { return !strings.HasSuffix(fi.Name(), "_test.go") }, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}

	missing := func(kind, name, text string) {
		if ast.IsExported(name) && strings.TrimSpace(text) == "" {
			t.Errorf("%s %s has no doc comment", kind, name)
		}
	}

	values := func(vs []*doc.Value) {
		for _, v := range vs {
			for _, n := range v.Names {
				missing("value", n, v.Doc)
			}
		}
	}

	d := doc.New(pkgs["election"], "election", 0)
	values(d.Consts)
	values(d.Vars)

	for _, f := range d.Funcs {
		missing("func", f.Name, f.Doc)
	}

	for _, typ := range d.Types {
		missing("type", typ.Name, typ.Doc)
		values(typ.Consts)
		values(typ.Vars)

		for _, f := range typ.Funcs {
			missing("func", f.Name, f.Doc)
		}

		for _, m := range typ.Methods {
			missing("method", typ.Name+"."+m.Name, m.Doc)
		}
	}
}
