"""faust agents and the pure steps they run: normalize (more to come: reserve, allocate, route)."""
