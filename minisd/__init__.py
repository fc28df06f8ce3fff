"""minisd"""
