"""placeholder"""
def solve_quantal_limit(game, *, tol=1e-9):
    raise NotImplementedError
