"""The built-in carrier simulator: Twilio's and Vobiz's REST dialects, real signed callbacks."""
