"""What bantzd tells a person in the morning (SPEC section 6).

Rendering is a pure function of states and journal events so it can be tested without a
home folder; gathering those inputs and writing reports/YYYY-MM-DD.md is a thin I/O edge.
"""
