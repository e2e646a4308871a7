"""Carriers behind one narrow seam: Twilio, Vobiz, and the built-in simulator that speaks both."""
