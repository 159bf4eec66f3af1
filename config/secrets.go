package config

import (
	"fmt"
	"os"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
)

// envFunc is env("NAME"): the value of the runtime's environment variable
// NAME, read when the file is loaded. An unset or empty variable is an
// error, so that a missing secret stops the start instead of running with
// an empty one.
var envFunc = function.New(&function.Spec{
	Description: "The value of an environment variable of the runtime, for secrets.",
	Params:      []function.Parameter{{Name: "name", Type: cty.String}},
	Type:        function.StaticReturnType(cty.String),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		name := args[0].AsString()
		if !validEnvName(name) {
			return cty.NilVal, function.NewArgErrorf(0, "%q is not a valid environment variable name: use letters, digits and '_', not starting with a digit", name)
		}
		v, ok := os.LookupEnv(name)
		if !ok || v == "" {
			return cty.NilVal, fmt.Errorf("the environment variable %s is not set or empty", name)
		}
		return cty.StringVal(v), nil
	},
})

// envRefused stands for env() where a value is not a secret: such values
// are recorded in KV, shown by `sluice plan` and logged, where a secret
// must not go.
var envRefused = function.New(&function.Spec{
	Params: []function.Parameter{{Name: "name", Type: cty.String, AllowUnknown: true, AllowNull: true}},
	Type:   function.StaticReturnType(cty.String),
	Impl: func([]cty.Value, cty.Type) (cty.Value, error) {
		return cty.NilVal, fmt.Errorf("env() reads secrets, which only a function's env values and passwords take; this setting is recorded and shown, so write its value here")
	},
})

var (
	secretContext = &hcl.EvalContext{Functions: map[string]function.Function{"env": envFunc}}
	plainContext  = &hcl.EvalContext{Functions: map[string]function.Function{"env": envRefused}}
)

// fromEnv reports whether expr calls env(), that is whether its value is a
// secret from the environment.
func fromEnv(expr hcl.Expression) bool {
	node, ok := expr.(hclsyntax.Node)
	if !ok {
		return false
	}
	found := false
	_ = hclsyntax.VisitAll(node, func(n hclsyntax.Node) hcl.Diagnostics {
		if call, ok := n.(*hclsyntax.FunctionCallExpr); ok && call.Name == "env" {
			found = true
		}
		return nil
	})
	return found
}

// secretStr decodes a string attribute that may read a secret with env().
func (d *decoder) secretStr(a *hcl.Attribute) (string, bool) {
	v, ok := d.eval(a, secretContext)
	if !ok {
		return "", false
	}
	if v.Type() != cty.String {
		d.typeError(a, "a string", v.Type())
		return "", false
	}
	return v.AsString(), true
}
