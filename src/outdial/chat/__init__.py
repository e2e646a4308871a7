"""`POST /chat`: a text conversation with an assistant, kept server-side in sessions."""
