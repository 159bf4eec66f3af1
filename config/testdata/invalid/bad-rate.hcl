function "a" {
  module = "a.wasm"
}

queue "q1" {
  subject  = "q1"
  function = "a"
  rate     = "200"
}

queue "q2" {
  subject  = "q2"
  function = "a"
  rate     = "0/s"
}

queue "q3" {
  subject  = "q3"
  function = "a"
  rate     = "10/fortnight"
}

topic "t" {
  subject = "t"
  subscriber "s1" {
    function = "a"
    rate     = "-1/s"
  }
  subscriber "s2" {
    function = "a"
    rate     = "5/0s"
  }
}
