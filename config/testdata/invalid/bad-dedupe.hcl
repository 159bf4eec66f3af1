function "a" {
  module = "a.wasm"
}

queue "q1" {
  subject  = "q1"
  function = "a"
  dedupe   = "48h"
}

queue "q2" {
  subject  = "q2"
  function = "a"
  dedupe   = "yes"
}

topic "t" {
  subject = "t"
  subscriber "s1" {
    function = "a"
    dedupe   = "0s"
  }
  subscriber "s2" {
    function = "a"
    dedupe   = 24
  }
}
