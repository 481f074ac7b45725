"""Lesson 06's checkers: a tile with its halo and the naive kernel's global loads.

Pure arithmetic (``poolkit.gpu.tile_extent`` / ``count_global_loads``): no kernel runs,
so these need neither a GPU nor the simulator.
"""
from poolkit.exercises import lesson06


def test_lesson06_checkers_accept_right_and_explain_wrong_answers(capsys):
    def tile(tr, tc, k, s, d):
        span = (k - 1) * d + 1
        return ((tr - 1) * s + span, (tc - 1) * s + span)

    assert lesson06.check_tile_with_halo(tile)
    assert not lesson06.check_tile_with_halo(lambda tr, tc, k, s, d: (tr * s + k - 1, tc * s + k - 1))
    out = capsys.readouterr().out
    assert "FAIL" in out and "dilation" in out

    def loads(H, W, k, s, p):
        def taps(L):
            return sum(min(o * s - p + k, L) - max(o * s - p, 0) for o in range((L + 2 * p - k) // s + 1))
        return taps(H) * taps(W)

    def loads_with_padding(H, W, k, s, p):  # counts padding taps as loads
        return ((H + 2 * p - k) // s + 1) * ((W + 2 * p - k) // s + 1) * k * k

    assert lesson06.check_naive_loads(loads)
    assert not lesson06.check_naive_loads(loads_with_padding)
    out = capsys.readouterr().out
    assert "FAIL" in out and "padding taps are skipped" in out
