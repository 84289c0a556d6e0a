"""Tools that look inside data and models: manifest checks, the reference LSTM, gate plots."""
