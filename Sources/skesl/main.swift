print("skesl: under construction")
