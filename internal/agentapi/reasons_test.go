package agentapi

import (
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The agent's reasons end up in the ImportFailed condition and status.lastFailure, whose reasons
// the API's catalogue documents: both lists hold the same names with the same values.
func TestReasonsAreTheAPIs(t *testing.T) {
	agent := reasonBlock(t, "agentapi.go", "Reasons of a failed or interrupted import")
	api := reasonBlock(t, "../../api/v1alpha1/conditions.go", "Reasons the import agent reports")
	if len(agent) < 10 {
		t.Fatalf("found %d reasons in agentapi.go: the test no longer finds the block", len(agent))
	}
	for _, name := range slices.Sorted(maps.Keys(agent)) {
		if got, ok := api[name]; !ok || got != agent[name] {
			t.Errorf("%s = %q in agentapi, %q in the API's catalogue", name, agent[name], got)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(api)) {
		if _, ok := agent[name]; !ok {
			t.Errorf("%s = %q is in the API's catalogue of agent reasons, not in agentapi", name, api[name])
		}
	}
	for name, value := range agent {
		if name != "Reason"+value {
			t.Errorf("%s = %q: a reason's identifier is Reason followed by its value", name, value)
		}
	}
}

// reasonBlock is the Reason constants of the const block in file whose doc comment starts with doc.
func reasonBlock(t *testing.T, file, doc string) map[string]string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	for _, decl := range f.Decls {
		gen, ok := decl.(*ast.GenDecl)
		if !ok || gen.Tok != token.CONST || gen.Doc == nil || !strings.HasPrefix(gen.Doc.Text(), doc) {
			continue
		}
		out := map[string]string{}
		for _, spec := range gen.Specs {
			v := spec.(*ast.ValueSpec)
			for i, name := range v.Names {
				lit, ok := v.Values[i].(*ast.BasicLit)
				if !ok || !strings.HasPrefix(name.Name, "Reason") {
					continue
				}
				out[name.Name], _ = strconv.Unquote(lit.Value)
			}
		}
		return out
	}
	t.Fatalf("%s has no const block documented %q", file, doc)
	return nil
}
