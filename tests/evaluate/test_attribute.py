from privsynth.evaluate.attribute import attribute_inference


def test_memorised_members_are_reconstructed_better(digits_parts):
    (xm, ym), (xn, yn), (xr, yr), _ = digits_parts
    r = attribute_inference(xm, ym, xn, yn, xm, ym, xr, yr)
    assert r["synthetic"]["members"]["mse_hidden_half"] == 0.0
    assert r["synthetic"]["members"]["label_accuracy"] == 1.0
    assert r["member_advantage_mse"] > 0.01 and r["member_advantage_label"] > 0
    # the reference set knows nobody in particular: no member advantage there
    ref = r["reference"]
    assert abs(ref["members"]["mse_hidden_half"] - ref["nonmembers"]["mse_hidden_half"]) < 0.02
