function "1st" {
  module = "a.wasm"
}

function "has space" {
  module = "a.wasm"
}

queue "a.b" {
  subject  = "a.b"
  function = "1st"
}

topic "t" {
  subject = "t"
  subscriber "x/y" { function = "1st" }
}

function "this_name_is_much_too_long_to_be_used_as_a_name_of_a_function_really" {
  module = "a.wasm"
}

function "" {
  module = "a.wasm"
}
